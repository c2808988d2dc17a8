// After a run of `moetron run`: what the ranks counted, brought together, and the results
// file's contents assembled on rank 0.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/engine/device_binding.hpp"
#include "moetron/engine/engine.hpp"
#include "moetron/io/prompts.hpp"
#include "moetron/io/results.hpp"
#include "moetron/parallel/groups.hpp"
#include "run_options.hpp"

namespace moetron::apps {

// Routed token-slots per (layer, expert) over the whole job, [layers * E] (collective: each
// layer is counted once per replica, by its tp rank 0).
std::vector<int64_t> gather_expert_tokens(ParallelGroups& groups, ModelForward& forward, const ShardSpec& shard,
                                          const ModelConfig& config, bool counted_here);
// Bytes each rank sent and received, [world * 2] (collective).
std::vector<int64_t> gather_traffic(ParallelGroups& groups, int world_size);

// Each rank's host and device words (its Ops' name, and the bound GPU's UUID where it computes
// on one), in world rank order (collective).
struct RankPlaces {
  std::vector<std::string> hosts, devices;
};
RankPlaces gather_places(const Ops& ops, const DeviceBinding& binding);

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

// Two log lines: the prefill rate, and the median decode step at each batch size that ran
// (perf/bench.py reads the second).
void log_step_summary(const std::vector<StepRecord>& steps);

}  // namespace moetron::apps
