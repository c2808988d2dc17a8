// `moetron analyze`: the expert-load report of a results file (docs/results-schema.md). It reads
// what the file holds (routing counts, windows, co-activation, the plan and the ranks' work) and
// knows nothing of how they were produced.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/analysis/load_stats.hpp"

namespace moetron {

struct LoadReport {
  std::string source;                 // the results file
  int64_t experts = 0;
  std::vector<int64_t> moe_layers;    // layers with routed tokens (dense layers' rows are zero), in order
  std::vector<int64_t> layer_tokens;  // [moe layers x experts]
  std::vector<LoadStats> layer_stats; // one per MoE layer
  std::vector<int64_t> overall_tokens;  // [experts]: summed over the MoE layers
  LoadStats overall;
  std::vector<int64_t> hot, cold;     // experts of the summed load, hottest / coldest first
  std::vector<PairCount> pairs;       // the most frequent co-activated pairs

  // Under the run's plan (or --ep): expert-parallel sets of contiguous experts.
  std::string plan;
  int64_t ep = 1;
  // Redundant experts of the run (/experts/replicas; 0: none, or --ep overrides the plan): a
  // replicated expert's load counts on its sets evenly split (set_loads with copies).
  int64_t redundant_experts = 0;
  std::vector<int64_t> ep_tokens;            // [ep]: each set's load over every MoE layer
  std::vector<int64_t> window_steps;         // [windows x 2]
  std::vector<int64_t> ep_tokens_by_window;  // [windows x ep]
  double expert_wait_share = 0;    // wait_share over (window, MoE layer) phases
  double expert_time_share = 0;    // busiest rank's expert seconds / the run's step seconds (NaN: not timed)
  double step_time_lost_share = 0; // expert_wait_share * expert_time_share
  // Parallel runs (/ranks): per MPI rank, the load its layer and expert ranges imply, and what
  // it measured.
  std::vector<int64_t> rank_expected_tokens, rank_expert_tokens;
  std::vector<double> rank_expert_seconds;

  // --routing-skew the run asked for ("" for none), and how the loads fit it: for zipf:S the
  // mean over MoE layers of the fitted exponent; for hot:K:F the mean share of the K hottest.
  std::string routing_skew;
  double law_asked = 0, law_measured = 0;
};

// Reads `results` (errors name the file and dataset). `top`: how many hot and cold experts and
// pairs; `ep` > 0 overrides the plan's expert-parallel degree.
LoadReport analyze_results(const std::string& results, int64_t top, int64_t ep);
// The printed table.
std::string format_load_report(const LoadReport& report);
// Writes the report as HDF5, atomically (README's `moetron analyze` lists its names).
void write_load_report(const std::string& path, const LoadReport& report);

}  // namespace moetron
