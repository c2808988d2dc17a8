// The time of one engine step of a plan, op by op: the kernels and collectives that
// src/model/forward.cpp and src/engine/engine.cpp run, with each stage's shard shapes, priced by
// a CostModel, then composed over micro-batches and pipeline stages. Assumptions: predictor.hpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/predict/cost_model.hpp"
#include "moetron/predict/plan_geometry.hpp"

namespace moetron {

// Per MoE layer (in layer order, dense layers skipped), per expert: the expected number of times
// one token picks that expert (each row sums to top_k). Empty: uniform routing (top_k / E each).
using ExpertShares = std::vector<std::vector<double>>;

// Per-expert token counts [MoE layer][expert] (as /experts/tokens of a results file, dense rows
// dropped) -> shares. A layer that counted nothing is uniform. Errors name `source`.
ExpertShares expert_shares_from_counts(const ModelConfig& config,
                                       const std::vector<std::vector<int64_t>>& counts,
                                       const std::string& source);

// One engine step on one replica (every replica alike: they run in lockstep).
struct StepShape {
  int64_t sequences = 1;            // in the step
  int64_t tokens_per_sequence = 1;  // 1 in decode; the prompt in prefill
  int64_t context = 1;              // decode: cached tokens each row attends to; prefill: the prompt
  bool prefill = false;
  int micro_batches = 1;            // the engine splits a step's sequences into pp of them
  bool recordable = true;           // decode: replayed as a graph when pp = 1 (decode_recordable)
  bool expert_gemms = true;         // the backend runs prefill-sized expert calls as per-expert
                                    // GEMMs (CUDA: expert_call_by_gemms)
  int64_t activation_bytes = 2;     // one activation element, as the backend stores and sends it
                                    // (Ops::activation_dtype: CUDA bf16, the CPU f32); the
                                    // profile's memory-bound and collective sizes are in it
  bool launches_overlap = false;    // the backend enqueues each op and returns (CUDA), so an
                                    // eager decode step's launches overlap its kernels; false
                                    // where each op runs on the host (the CPU)
  double ranks_per_device = 1;      // ranks whose kernels take turns on this rank's device
                                    // (Cluster::ranks_per_device; assumption 15, predictor.hpp)
};

// Seconds of one step as the slowest rank sees it. total_s is the sum of the fields except
// imbalance_s, which is the part of compute_s spent waiting for the busiest expert set, and
// emulation_s, which no real rank spends.
struct StepCost {
  double compute_s = 0;          // the kernels' own time
  double kernel_overhead_s = 0;  // the gaps between kernels (graph nodes or eager launches)
  double tp_comm_s = 0;          // tensor-parallel all-reduces and the vocabulary gather
  double expert_comm_s = 0;      // expert dispatch and combine (all-to-all), their count exchange
  double pipeline_comm_s = 0;    // activations sent between stages on the critical path
  double bubble_s = 0;           // the slowest stage idle while the pipeline fills and drains
  double host_sync_s = 0;        // per-step agreement: totals, dispatch sizes, sampled tokens
  double imbalance_s = 0;        // included in compute_s
  double host_s = 0;             // the host's bookkeeping of each micro-batch: scratch reset,
                                 // batch layout built and uploaded, routing counted
  double emulation_s = 0;        // NOT in total_s: the local copies that stand in for the step's
                                 // collectives on an emulated rank (`moetron run --emulate-rank`,
                                 // EmulatedCommunicator; assumption 13, predictor.hpp)
  double sharing_s = 0;          // what the kernels of the other ranks sharing this rank's device
                                 // add beyond its own step (assumption 15, predictor.hpp)
  double total_s() const {
    return compute_s + kernel_overhead_s + tp_comm_s + expert_comm_s + pipeline_comm_s + bubble_s + host_sync_s +
           host_s + sharing_s;
  }
  // What an emulated rank measures of this step: its kernels and their gaps, the copies standing
  // in for its collectives, and its host's own bookkeeping (inside every step's clock, engine.cpp);
  // none of the waiting for peers or their messages (*_comm_s, bubble_s, host_sync_s), and no
  // other rank's kernels (sharing_s: an emulated rank has its device to itself).
  double emulated_rank_s() const { return compute_s + kernel_overhead_s + emulation_s + host_s; }
  StepCost& operator+=(const StepCost& o);  // field by field
};

// The sizes one priced op was asked at (-1: not a size of this op).
struct OpShape {
  int64_t rows = -1;      // tokens (GEMM m, attention rows), or rows per expert in an expert call
  int64_t n = -1, k = -1; // GEMM and expert-call dimensions
  int64_t context = -1;   // attention: cached tokens each row attends to
  int64_t experts = -1;   // expert call: active experts priced
  int64_t call_tokens = -1;  // expert call: the token count that picks its kernel
  int64_t bytes = -1;     // memory-bound kernels, copies and collectives: the bytes priced
  int64_t ranks = -1;     // collectives: the group
};

// One op of a step as step_cost priced it (`moetron plan --explain`): what it added to each
// field of the step, so that a step's ops sum to its StepCost.
struct PricedOp {
  std::string name;    // the kernel family or part: "qkv gemm", "tp all-reduce", ...
  int kernels = 1;     // kernels (launches) it stands for
  OpShape shape;
  std::string source;  // the cost model's note: table and reading, or the roofline
  StepCost cost;
  int stage = -1;      // the pipeline stage whose forward runs it; -1: the step's own (pipeline, sync)
};

struct StepTrace {
  std::vector<PricedOp> ops;  // every stage's ops, micro-batch by micro-batch, then the step's own
  int reported_stage = 0;     // the stage step_cost reports (the busiest)
  std::string gaps;           // how the kernel gaps were priced, and their sources
};

// `trace`, when given, receives every priced op (and is cleared first): the reported stage's ops
// and the step's own sum to the result, field by field.
StepCost step_cost(const PlanGeometry& geometry, const ExpertShares& shares, const StepShape& shape,
                   const CostModel& cost, StepTrace* trace = nullptr);

// "2 ranks a device" for the sharing term's note, logs and the plan's cluster line; "" when each
// rank has its own device.
std::string describe_device_sharing(double ranks_per_device);

}  // namespace moetron
