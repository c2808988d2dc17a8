// Serving latency of a run, from each request's token times: the percentiles /summary holds
// and goodput under a service-level objective (SLO). Pure arithmetic; knows nothing of how the
// times were produced.
//
// Per request, with its token times measured from its arrival:
//   TTFT = the first token's time; end-to-end (e2e) = the last token's time;
//   inter-token latency (ITL) = the gaps between consecutive tokens; its mean over the request
//   (TPOT) = (e2e - TTFT) / (tokens - 1), undefined (NaN) for a one-token request.
// Percentiles (analysis/percentiles.hpp, linear interpolation) are taken over requests for TTFT
// and e2e, and over every gap of every request, pooled, for ITL (so long requests weigh more,
// as a user streaming tokens sees them).
// Goodput: the requests that met the SLO, per second of the run. A request meets it when its
// TTFT <= slo.ttft_s and its mean ITL <= slo.itl_s (a one-token request: TTFT alone).
#pragma once
#include <cstdint>
#include <vector>

namespace moetron {

struct LatencySlo {
  double ttft_s = 1.0;  // --slo-ttft
  double itl_s = 0.1;   // --slo-itl: 10 tokens/s, a comfortable reading pace
};

struct LatencyPercentiles {
  double p50 = 0, p90 = 0, p99 = 0;
};

struct LatencySummary {
  LatencyPercentiles ttft, itl, e2e;
  int64_t slo_met = 0;                // requests meeting the SLO
  double slo_met_fraction = 0;        // slo_met / requests (NaN with no requests)
  double goodput_requests_per_s = 0;  // slo_met / total_seconds (NaN when total_seconds is 0)
};

// Gaps between consecutive token times (empty for fewer than two tokens).
std::vector<double> inter_token_gaps(const std::vector<double>& token_times_s);
// (last - first) / (count - 1): the request's mean ITL; NaN for fewer than two tokens.
double mean_inter_token_s(const std::vector<double>& token_times_s);
bool meets_slo(const std::vector<double>& token_times_s, const LatencySlo& slo);

// `token_times_s[i]`: request i's token times from its arrival (each non-empty).
LatencySummary summarize_latency(const std::vector<std::vector<double>>& token_times_s, const LatencySlo& slo,
                                 double total_seconds);

}  // namespace moetron
