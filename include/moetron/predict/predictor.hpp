// The predictor: for a model, a workload and a cluster, every plan enumerate_plans lists, whether
// it fits, and what it would achieve (throughput, TTFT, inter-token latency, memory per rank),
// ranked. Hardware enters only through a CostModel.
//
// ---- Assumptions (all of them; docs/design-notes.md "The predictor" says the same) ----
// Each plan gets two predictions from the same steps (assumption 14): the estimate, priced by the
// CostModel given (a profile's medians: centred on what the engine measures; it ranks the plans),
// and the ceiling, priced by PredictorOptions::ceiling, whose answers are floors. The ceiling is an
// UPPER BOUND on what the engine achieves (times are lower bounds), and so is the estimate when its
// CostModel's answers are floors (RooflineCostModel's are). It holds because every step below only
// leaves work out or takes the cheaper reading, never adds any:
//  1. A step's ops are the ones forward.cpp and engine.cpp run, each stage priced for its own
//     shard (the rank holding the most; ranks of a stage differ only in expert loads). Each Ops
//     call is at least one kernel (swiglu_mlp and moe_experts at least two); kernels the engine
//     may add (uploads, host copies, syncs, sampling passes beyond argmax) are left out.
//  2. Inside a forward the ops are serialised by their data (each collective waits for the kernel
//     before it, the next kernel for the collective), so a rank's time is their sum, each kernel
//     with its gap. Except an eager decode step on a backend that enqueues (CUDA with pp > 1, or
//     an emulated rank): the host launches op i one launch gap after op i - 1 while the device
//     runs earlier ones, and op i starts when it is launched and a graph node's gap after op i - 1
//     ended (a two-stage pipeline; the device's idle time is the step's kernel gaps). Collectives
//     are not in that pipeline (their time is apart), which can only add idle. An op's launch
//     costs the host its family's measured call (CostModel::launch_s: a GEMM, an expert call,
//     attention, a copy, a memory-bound kernel; the profile's launch_cost) and never less than
//     an eager launch gap a kernel (the cheapest op's, which is all a profile without
//     launch_cost gives). Prefill stays a
//     sum (its expert calls wait for the host in every MoE layer), and so do groups through host
//     memory (ranks sharing a GPU: every collective waits for the device) and the CPU (each op
//     runs on the host).
//  3. Decode steps replay CUDA graphs where the engine records them (decode_recordable, the rule of
//     can_record_decode): pp = 1, a backend that records, and no group of more than one rank on a
//     transport through host memory (ranks sharing a GPU). Their kernel gap is then the graph
//     node's; prefill, and every other decode step, launch eagerly.
//  4. Routing: uniform (each expert gets top_k / E of the picks) unless per-expert loads are given;
//     an expert is "active" in a step with the probability that one of the step's tokens picks it.
//     Every expert set waits for the busiest at the next collective (the tp all-reduce or the
//     combine all-to-all), so a layer's expert time is the busiest set's.
//  5. Expert dispatch (dp > 1): decode moves the fixed capacity forward.cpp sends (padding too),
//     prefill the real entries and a count exchange; compute counts real rows only.
//  6. Pipeline: the engine splits a step into the plan's micro-batches (Plan::micro_batch_count:
//     mb=, else pp) and stages wait on blocking sends: micro-batch i leaves stage s when s has
//     finished i - 1 and received i. The bubble is what that schedule adds to the busiest stage's
//     work. Each pipeline layout is ranked with 1, pp and 2 pp micro-batches
//     (micro_batch_choices): one reads each stage's weights once a step and leaves the pipeline
//     idle but for one stage; more shorten the fill and drain and read the weights again each.
//  7. Replicas run in lockstep (they meet in every MoE layer), every replica alike: requests are
//     spread evenly, all prompts are `prompt_tokens` long and every request generates
//     `output_tokens` (no early EOS).
//  8. Batch: the sequences decoding together per replica are the least of --max-batch, the
//     replica's requests, and what its KV cache holds at the mean footprint of a sequence over its
//     life (prompt + output / 2, in whole blocks): the time-averaged occupancy cannot exceed the
//     cache. With an arrival rate, the least batch B with B >= rate * output_tokens * ITL(B)
//     (Little's law: the engine holds at least that many).
//  9. Decode context: the mean over a sequence's life, prompt + output / 2.
// 10. Prefill steps hold as many whole prompts as --max-batch-tokens allows (one at least); the
//     decode rows a mixed step carries ride free. Workload time (all requests at once) is then
//     ceil(R / prompts per step) prefill steps plus the remaining decode rows in full batches,
//     for R requests per replica; decode steps' cost per token falls with the batch, so full
//     batches are the cheapest reading. TTFT is the mean over the first batch's prefill steps
//     (all at once), or one prompt's prefill step (with an arrival rate: no queueing).
// 11. Memory: estimate_rank_memory (predict/memory_estimate.hpp, the one function to swap for
//     parallel/memory_need): weights, one step's temporaries, the KV cache. A plan fits when, on
//     every stage, weights + temporaries + the reserve leave room for the KV cache of one whole
//     request within kv_memory_fraction of what is left (the engine's --gpu-memory-fraction).
// 12. On the CUDA backend (PredictorOptions::backend) a plan whose expert slices the CUDA kernels cannot
//     run (cuda_plan_problem) does not fit, whatever its memory.
// 13. An emulated rank (`moetron run --emulate-rank R --emulate-world N`) replaces each collective
//     by local copies of the bytes the real one would move on it (EmulatedCommunicator): a tp
//     all-reduce by one copy, an allgather and decode's fixed-capacity all-to-all by
//     1 + ceil(log2 N) copies filling the N blocks (what the rank receives from its N peers),
//     prefill's all-to-all by a copy a peer, a pipeline hop by a copy each way. The step it
//     measures is compute_s + kernel_overhead_s + emulation_s + host_s (StepCost::emulated_rank_s:
//     its host's bookkeeping is inside every step's clock): those copies, each priced as
//     CostModel::copy_s of its bytes (a profile's hbm_copy streaming rate; the roofline's HBM
//     rate) plus a kernel gap (a graph node in recorded decode steps). With dp > 1 the peers'
//     blocks are then packed as their replicas would route (--emulate-peers rotated, the default:
//     one pack_from_peers, a gather of the rows and a copy of the expert ids, in emulation_s too),
//     and the emulated rank's expert call gets the rows a real one would (expert_work's). A real
//     rank spends none of it (its collectives are the *_comm_s
//     parts), so emulation_s is left out of total_s and of every ranking.
// 14. The ceiling: the plan's decode and prefill steps, at the estimate's batch, prompts and
//     schedule, priced by a CostModel whose every answer is a floor (plan_costs.hpp: the roofline
//     at the FLOP and byte rates of the profile's fastest kernels, so that no measured kernel is
//     priced above its time, or the hardware figures' without a profile; no kernel gaps, no host
//     bookkeeping). Its throughput follows assumption 10 from those steps. Nothing
//     in it is fitted to measurements: how far the engine lands below it is what perf/PREDICTOR.md
//     reports as the share of the ceiling reached.
// 15. Ranks sharing a device (Cluster::ranks_per_device = s > 1: ranks bound to one GPU, or CPU
//     ranks whose threads outnumber the node's cores): the device serves the s ranks' kernels in
//     turn, each rank computing as much as this one (plan_problem keeps shards even). A profile's
//     estimate has them in lockstep (they compute when this rank does and wait in the same
//     collectives, so only its pipeline bubble leaves the device to them): sharing_s =
//     max(0, (s - 1) * compute_s - bubble_s). A cost model of floors (CostModel::prices_floors:
//     the ceiling, and the roofline estimate without a profile) takes only the floor every
//     schedule obeys, the rest of the step overlapping the others' kernels: a step of max(its own
//     time, s * compute_s). The profile's kernels are one rank's alone (the bench computes on rank 0
//     while the others wait); its collectives were measured by the sharing ranks themselves. A
//     run takes s from rank 0's device (device_setup's ranks_per_device): a job whose nodes share
//     their devices unevenly is priced as rank 0's node.
// Not modelled (each would only slow the engine down): scheduler and Python-free host overheads
// between steps, preemption and recomputation, stragglers, congestion between groups that share
// links, sampling beyond argmax, routing that changes over the run.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/model/config.hpp"
#include "moetron/parallel/plan.hpp"
#include "moetron/predict/cost_model.hpp"
#include "moetron/predict/memory_estimate.hpp"
#include "moetron/predict/step_cost.hpp"
#include "moetron/predict/workload.hpp"

namespace moetron {

struct Cluster {
  int ranks = 1;
  int ranks_per_node = 1;
  int64_t memory_per_rank = 0;    // device memory each rank may use
  int64_t reserved_per_rank = 0;  // taken before the model: runtime context, library workspaces
  // Groups carrying device tensors talk MPI through host buffers (some GPU serves several ranks:
  // DeviceBinding::transport "mpi"), which CUDA graphs cannot record.
  bool device_groups_through_host = false;
  // Ranks whose kernels take turns on one device (assumption 15): 1 where each rank has its own
  // GPU, 2 for two ranks on one GPU; on the CPU, ranks times threads over the node's cores.
  double ranks_per_device = 1;
};

struct PredictorOptions {
  int micro_batches = 0;            // predict_plans: pipelines with this many micro-batches only;
                                    // 0: each with micro_batch_choices
  double kv_memory_fraction = 0.9;  // share of the memory left that the KV cache takes
  ExpertShares expert_shares;       // empty: uniform routing
  std::string backend;              // "cuda": plans the CUDA kernels cannot run are refused (cuda_plan_problem)
  // Prices PlanPrediction::ceiling (assumption 14; PlanCosts::ceiling). nullptr: no ceiling.
  const CostModel* ceiling = nullptr;
};

// Whether the engine records this plan's decode steps as graphs (can_record_decode for the
// transports the plan's groups get): pp = 1, a backend that records (CUDA), and neither the tp
// group (tp > 1) nor the expert dispatch's stage group (dp > 1) on the host-staged transport.
bool decode_recordable(const Plan& plan, const std::string& backend, bool device_groups_through_host);

// What no run of a plan beats (assumption 14): its steps priced by PredictorOptions::ceiling.
// All zero when no ceiling model was given or the plan does not fit.
struct PlanCeiling {
  StepCost decode, prefill;        // at the prediction's decode_shape and prefill_shape
  double decode_tokens_per_s = 0;  // over the cluster, at the prediction's batch
  double output_tokens_per_s = 0;  // the workload's, as PlanPrediction::output_tokens_per_s
  bool known() const { return output_tokens_per_s > 0; }
};

struct PlanPrediction {
  Plan plan;
  bool fits = false;
  std::string refusal;         // why it does not fit ("" when it does)
  RankMemoryNeed memory;       // the stage's rank needing the most, KV for `batch` whole requests
  int64_t kv_tokens = 0;       // KV-cache tokens per replica (the smallest stage's room); -1: memory unknown
  int64_t batch = 0;           // sequences decoding together per replica
  std::string batch_limit;     // what sets it: "max batch", "requests", "KV cache", "arrival rate"
  int64_t prefill_prompts = 0; // prompts in one prefill step
  int micro_batches = 1;
  StepCost decode, prefill;    // one step each
  StepShape decode_shape, prefill_shape;  // what they were priced at (step_cost's input)
  double decode_tokens_per_s = 0;   // over the cluster, at `batch`
  double prefill_tokens_per_s = 0;  // prompt tokens, over the cluster
  double output_tokens_per_s = 0;   // the whole workload's generated tokens over its time
  double ttft_s = 0, itl_s = 0;
  std::string bottleneck;      // the largest part of the decode step, e.g. "compute 71%"
  PlanCeiling ceiling;         // the bound (PredictorOptions::ceiling); the fields above: the estimate
};

// The micro-batch counts predict_plans ranks a layout of `pp` stages with: 1 without a pipeline;
// `fixed` when positive (moetron plan --micro-batches); else 1, pp and 2 pp.
std::vector<int> micro_batch_choices(int pp, int fixed);

// One plan (valid for config: plan_problem empty, world size = cluster.ranks), at its own
// micro-batch count (Plan::micro_batch_count).
PlanPrediction predict_plan(const ModelConfig& config, const Plan& plan, const Workload& workload,
                            const Cluster& cluster, const CostModel& cost, const PredictorOptions& options);

// Every plan of enumerate_plans, pipelines once per micro_batch_choices count (Plan::mb): those
// that fit first, best first (output tokens/s, then decode tokens/s, then TTFT), then those that
// do not, in enumeration order.
std::vector<PlanPrediction> predict_plans(const ModelConfig& config, const Workload& workload,
                                          const Cluster& cluster, const CostModel& cost,
                                          const PredictorOptions& options);

// Why the first plan of a ranking wins, in a sentence or two (against the runner-up).
std::string explain_best(const std::vector<PlanPrediction>& ranking);

}  // namespace moetron
