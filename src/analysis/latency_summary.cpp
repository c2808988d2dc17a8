#include "moetron/analysis/latency_summary.hpp"

#include <limits>

#include "moetron/analysis/percentiles.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

LatencyPercentiles p50_p90_p99(std::vector<double> samples) {
  const std::vector<double> p = percentiles(std::move(samples), {50, 90, 99});
  return {p[0], p[1], p[2]};
}

}  // namespace

std::vector<double> inter_token_gaps(const std::vector<double>& t) {
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  return gaps;
}

double mean_inter_token_s(const std::vector<double>& t) {
  return t.size() < 2 ? kNan : (t.back() - t.front()) / static_cast<double>(t.size() - 1);
}

bool meets_slo(const std::vector<double>& t, const LatencySlo& slo) {
  MOETRON_ASSERT(!t.empty());
  return t.front() <= slo.ttft_s && (t.size() < 2 || mean_inter_token_s(t) <= slo.itl_s);
}

LatencySummary summarize_latency(const std::vector<std::vector<double>>& token_times_s, const LatencySlo& slo,
                                 double total_seconds) {
  std::vector<double> ttft, e2e, gaps;
  LatencySummary s;
  for (const std::vector<double>& t : token_times_s) {
    MOETRON_ASSERT(!t.empty());
    ttft.push_back(t.front());
    e2e.push_back(t.back());
    const std::vector<double> g = inter_token_gaps(t);
    gaps.insert(gaps.end(), g.begin(), g.end());
    s.slo_met += meets_slo(t, slo) ? 1 : 0;
  }
  s.ttft = p50_p90_p99(std::move(ttft));
  s.itl = p50_p90_p99(std::move(gaps));
  s.e2e = p50_p90_p99(std::move(e2e));
  const double met = static_cast<double>(s.slo_met);
  s.slo_met_fraction = token_times_s.empty() ? kNan : met / static_cast<double>(token_times_s.size());
  s.goodput_requests_per_s = total_seconds > 0 ? met / total_seconds : kNan;
  return s;
}

}  // namespace moetron
