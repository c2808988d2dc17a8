// The step loop: schedule, run the forward (as micro-batches through the pipeline stages),
// sample, record. Every rank runs it; which parts a rank executes follows from its place in
// the plan (first/last stage, tp rank, replica).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moetron/comm/communicator.hpp"
#include "moetron/core/step_observer.hpp"
#include "moetron/engine/decode_graphs.hpp"
#include "moetron/engine/scheduler.hpp"
#include "moetron/io/results.hpp"  // StepRecord
#include "moetron/model/forward.hpp"

namespace moetron {

// This rank's groups and coordinates (see parallel/plan.hpp for how they are built).
struct EngineGroups {
  Communicator* world = nullptr;
  Communicator* tp = nullptr;        // same stage and replica
  Communicator* replica = nullptr;   // every rank of this data-parallel replica
  Communicator* pipeline = nullptr;  // same replica and tp rank, one rank per stage (pp order)
  Communicator* stage = nullptr;     // the stage's ranks of every replica (the experts' dispatch)
  int pp_rank = 0, pp_size = 1, dp_rank = 0, dp_size = 1, tp_rank = 0;
  int replica_root = 0;  // rank, in `replica`, of the last stage's tp rank 0 (holds the tokens)
  // World ranks of each replica's reporter (last stage, tp 0), by replica index.
  std::vector<int> reporters;
};

struct EngineOptions {
  SchedulerLimits limits;
  // With limits.prefill_chunk == kPrefillChunkAuto: how each step's prefill budget is sized.
  AdaptiveChunk adaptive_chunk;
  int64_t kv_blocks = 0;  // per replica (each rank holds its layers' and heads' share)
  bool save_logits = false;
  int64_t progress_every_s = 2;
  // Told when each step starts and ends (the end is when its tokens are on the host); for
  // measurements such as GPU idle time within steps. Optional.
  StepObserver* observer = nullptr;
  // Steps per window of the routed-token record (engine/routing_windows.hpp); 0: automatic.
  int64_t routing_window = 0;
  // Micro-batches each step is split into through the pipeline (Plan::micro_batch_count).
  int micro_batches = 1;
};

struct EngineReport {
  std::vector<StepRecord> steps;
  double total_seconds = 0;
  // Routed tokens per window of steps, of this rank's layers: [windows x local layers x E], with
  // each window's half-open step range.
  std::vector<int64_t> window_counts;
  std::vector<std::pair<int64_t, int64_t>> window_ranges;
  // Seconds this rank was blocked in its groups' calls (Communicator::blocked_seconds) within
  // the steps' measured intervals (StepRecord::seconds), over its decode and its prefill steps.
  double decode_comm_wait_s = 0, prefill_comm_wait_s = 0;
};

class Engine {
 public:
  // `graphs` (may be null: every step eager) replays recorded decode steps.
  Engine(const ModelConfig& config, Ops& ops, ModelForward& forward, const EngineGroups& groups,
         const EngineOptions& options, DecodeGraphs* graphs = nullptr);
  // Runs this replica's sequences to completion, in lockstep with the other replicas.
  // `sequences` are this replica's share, in prompts-file order.
  EngineReport run(std::vector<Sequence>& sequences);

 private:
  // One micro-batch through this rank's stage; returns sampled tokens on the last stage.
  // dispatch_tokens: see BatchLayout (0 unless the replicas agreed on it).
  void run_micro_batch(const std::vector<ScheduledSeq>& group, int64_t dispatch_tokens,
                       std::vector<int32_t>& tokens, std::vector<float>& logits);
  // In a decode-only step with several replicas: the most tokens any replica has in each
  // micro-batch (they meet in the experts' all-to-all, which can then use buffers of that
  // fixed size). Zeros otherwise.
  std::vector<int64_t> agree_dispatch_tokens(const std::vector<std::vector<ScheduledSeq>>& parts,
                                             bool any_prefill);
  // Picks each sequence's next token from the step's logits (ModelForward::logits_device).
  void sample(const std::vector<ScheduledSeq>& group, const Tensor& step_logits,
              std::vector<int32_t>& tokens, std::vector<float>& logits);
  // ids [n] for logits [n, V] on the backend (one tp rank, no saved logits): argmax when every
  // sequence is greedy, else Ops::sample_rows; nothing but ids comes back to the host.
  void sample_on_backend(const std::vector<ScheduledSeq>& group, const Tensor& step_logits,
                         Tensor& ids);
  // Throws Error naming the request and step where a sampler gave kNonFiniteToken (its row of
  // logits held a NaN or +Inf): never a silently chosen token.
  void check_sampled(const std::vector<ScheduledSeq>& group, const int32_t* ids) const;
  // Communicator::blocked_seconds summed over this rank's groups (each group once).
  double comm_blocked_seconds() const;

  const ModelConfig& config_;
  Ops& ops_;
  ModelForward& forward_;
  EngineGroups groups_;
  EngineOptions options_;
  DecodeGraphs* graphs_;
  Tensor sampled_ids_;  // device-side sampler output, one per sequence of a step
  size_t step_ = 0;     // the step run() is in, for messages
};

}  // namespace moetron
