// After a run of `moetron run`: what the ranks counted, brought together, and the results
// file's contents assembled on rank 0.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/engine/gather.hpp"
#include "moetron/engine/engine.hpp"
#include "moetron/engine/rank_emulation.hpp"
#include "moetron/io/prompts.hpp"
#include "moetron/io/results.hpp"
#include "moetron/parallel/groups.hpp"
#include "run_options.hpp"

namespace moetron::apps {

struct RunFacts {
  const RunOptions* options = nullptr;
  const ModelConfig* config = nullptr;
  Plan plan;
  std::string backend;
  RankPlaces places;
  int world_size = 1;
};
RunResults assemble_results(const RunFacts& run, const std::vector<RequestSpec>& specs,
                            const std::vector<Sequence>& finished, const EngineReport& report,
                            const std::vector<int64_t>& expert_tokens, const std::vector<int64_t>& traffic);

// The routing beyond /experts/tokens (windows, co-activation), each rank's expert work (parallel
// runs: results.ranks is filled), and the skew asked for, as a root attribute.
void add_expert_routing(RunResults& results, const ExpertRouting& routing, const RanksExpertWork& work,
                        const std::string& routing_skew);
// Each rank's time blocked in communication within decode and prefill steps (parallel runs).
void add_comm_wait(RunResults& results, const RanksCommWait& wait);
// An emulated rank's one place (its host and device) stands for every rank of the plan it
// emulates: every rank's share would be timed there.
RankPlaces emulated_places(const RankPlaces& here, int plan_world);
// Root attributes saying the results are one emulated rank's (emulated_rank, emulated_world,
// emulated_plan, emulated_peers): its step times are that rank's compute, its tokens are not meaningful.
void mark_emulated(RunResults& results, const Emulation& emulation, const Plan& plan);
// One log line: TTFT, ITL and end-to-end percentiles, and goodput under the SLO.
std::string describe_latency(const RunSummary& summary);

// Two log lines: the prefill rate, and the median decode step at each batch size that ran
// (perf/bench.py reads the second).
void log_step_summary(const std::vector<StepRecord>& steps);

}  // namespace moetron::apps
