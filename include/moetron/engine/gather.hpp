// Brings what the ranks counted together after a run: every replica's finished sequences to world rank 0, which writes the results file.
#pragma once
#include <mpi.h>

#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/comm/communicator.hpp"
#include "moetron/engine/scheduler.hpp"
#include "moetron/io/results.hpp"  // ExpertRouting
#include "moetron/model/forward.hpp"
#include "moetron/parallel/groups.hpp"

namespace moetron {

// `reporters[d]` is the world rank that holds replica d's complete sequences (its last stage,
// tp rank 0: the only rank with their logits). Collective over `world`. On rank 0, returns all
// sequences sorted by prompts-file index; elsewhere an empty vector.
std::vector<Sequence> gather_sequences(Communicator& world, const std::vector<int>& reporters,
                                       std::vector<Sequence>& mine);

// Routed token-slots per (layer, expert) over the whole job, [layers * E] (collective: each
// layer is counted once per replica, by its tp rank 0).
std::vector<int64_t> gather_expert_tokens(ParallelGroups& groups, ModelForward& forward, const ShardSpec& shard,
                                          const ModelConfig& config, bool counted_here);
// The windows (EngineReport::window_counts of this rank's layers, and their step ranges, the
// same on every rank) and the co-activation of every layer, summed over the job as
// gather_expert_tokens does (collective).
ExpertRouting gather_expert_routing(ParallelGroups& groups, ModelForward& forward, const ShardSpec& shard,
                                    const ModelConfig& config, bool counted_here,
                                    const std::vector<int64_t>& window_counts,
                                    const std::vector<std::pair<int64_t, int64_t>>& window_ranges);
// Every rank's ExpertWork, by world rank (collective).
struct RanksExpertWork {
  std::vector<int64_t> tokens;
  std::vector<double> seconds;
};
RanksExpertWork gather_expert_work(ParallelGroups& groups, ModelForward& forward, int world_size);
// Every rank's time blocked in communication within decode and within prefill steps
// (EngineReport::decode_comm_wait_s, prefill_comm_wait_s), by world rank (collective).
struct RanksCommWait {
  std::vector<double> decode_s, prefill_s;
};
RanksCommWait gather_comm_wait(ParallelGroups& groups, double decode_s, double prefill_s, int world_size);

// Bytes each rank sent and received, [world * kRankFields] (collective).
constexpr size_t kRankFields = 2;  // bytes sent, bytes received
std::vector<int64_t> gather_traffic(ParallelGroups& groups, int world_size);

// Each rank's host and device words (its Ops' name, and the bound GPU's UUID where it computes
// on one), in rank order of `world` (collective over it).
struct RankPlaces {
  std::vector<std::string> hosts, devices;
};
RankPlaces gather_places(const Ops& ops, const std::string& gpu_uuid, MPI_Comm world);

}  // namespace moetron
