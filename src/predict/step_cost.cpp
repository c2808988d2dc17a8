#include "moetron/predict/step_cost.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

namespace {

// Activations (hidden rows, the messages between ranks) take the backend's activation element
// size (StepShape::activation_bytes: bf16 on CUDA, f32 on the CPU); these are fixed.
constexpr int64_t kF32 = 4, kI32 = 4, kI64 = 8;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The cost of one stage's forward of one micro-batch, accumulated kernel by kernel in the order
// forward.cpp runs them. Every Ops call is at least one kernel; swiglu_mlp and moe_experts are
// at least two (the gate/up and the down GEMM).
class StageForward {
 public:
  StageForward(const PlanGeometry& g, const ExpertShares& shares, const CostModel& cost, int stage,
               const StepShape& shape, int64_t sequences)
      : g_(g), c_(*g.config), s_(g.stages[static_cast<size_t>(stage)]), shares_(shares), cost_(cost),
        shape_(shape), seqs_(sequences), T_(sequences * shape.tokens_per_sequence),
        in_graph_(!shape.prefill && shape.recordable && g.plan.pp == 1), act_(shape.activation_bytes),
        pipelined_(!in_graph_ && !shape.prefill && shape.launches_overlap) {}

  StepCost run() {
    const int64_t H = c_.hidden_size;
    if (s_.first_stage) memory_kernel(2 * T_ * H * act_);  // embed
    int64_t moe_index = 0;
    for (int64_t l = 0; l < c_.num_layers; ++l) {
      const bool moe = c_.layer_is_moe[static_cast<size_t>(l)];
      if (l >= s_.layer_begin && l < s_.layer_end) layer(l == s_.layer_begin, moe ? moe_index : -1);
      if (moe) ++moe_index;
    }
    memory_kernel(3 * T_ * H * act_);  // the last residual add
    if (s_.last_stage) logits();
    // engine.cpp's run_micro_batch around the forward: reset_temps, the batch layout built and
    // uploaded, the routing counted over the stage's layers (the counting rank: tp rank 0).
    out_.host_s += cost_.host_step_s(T_, s_.layer_end - s_.layer_begin, std::max<int64_t>(c_.num_experts, 1),
                                     std::max<int64_t>(c_.top_k, 1));
    if (pipelined_) {  // the device's idle time, without and with the emulated rank's copies
      out_.kernel_overhead_s = real_.device_s - out_.compute_s;
      out_.emulation_s = emulated_.device_s - real_.device_s;
    }
    return out_;
  }

 private:
  // An eager decode step on a backend that enqueues (assumption 2): the host launches each op one
  // launch gap after the last; the device starts it once it is launched and a graph node's gap
  // after the previous op ended (the device's own latency between dependent kernels, which a
  // replayed graph pays too).
  struct LaunchPipeline {
    double host_s = 0, device_s = 0;
    void enqueue(double launch_gap_s, double device_gap_s, double seconds) {
      host_s += launch_gap_s;
      device_s = std::max(device_s + device_gap_s, host_s) + seconds;
    }
  };

  void kernel(double seconds, int count = 1) {
    out_.compute_s += seconds;
    const double gap = cost_.kernel_overhead_s(in_graph_);
    if (!pipelined_) {
      out_.kernel_overhead_s += count * gap;
      return;
    }
    const double device_gap = cost_.kernel_overhead_s(true);
    for (int i = 0; i < count; ++i)
      for (LaunchPipeline* p : {&real_, &emulated_}) p->enqueue(gap, device_gap, seconds / count);
  }
  void memory_kernel(int64_t bytes) { kernel(cost_.memory_bound_s(bytes)); }
  void tp_allreduce(int64_t bytes) {
    out_.tp_comm_s += cost_.allreduce_s(bytes, g_.plan.tp, g_.tp);
    if (g_.plan.tp > 1) emulated_copy(bytes);  // allreduce_sum: the buffer into scratch
  }

  // An emulated rank's stand-ins for its collectives (EmulatedCommunicator, assumption 13): device
  // copies, each Ops::copy of `bytes` (CostModel::copy_s) with its gap. Kept apart in
  // emulation_s: a real rank moves these bytes in the collective, priced in *_comm_s.
  void emulated_copy(int64_t bytes) {
    if (bytes <= 0) return;
    if (pipelined_)
      emulated_.enqueue(cost_.kernel_overhead_s(false), cost_.kernel_overhead_s(true), cost_.copy_s(bytes));
    else
      out_.emulation_s += cost_.copy_s(bytes) + cost_.kernel_overhead_s(in_graph_);
  }
  // `group` blocks of `bytes` side by side, as EmulatedCommunicator::fill_repeated makes them (the
  // allgather, and the all-to-all whose blocks are all the own block's size): the block copied
  // once, then what is filled doubled, 1 + ceil(log2 group) copies.
  void emulated_fill(int64_t bytes, int64_t group) {
    emulated_copy(bytes);
    for (int64_t filled = 1; filled < group;) {
      const int64_t n = std::min(filled, group - filled);
      emulated_copy(n * bytes);
      filled += n;
    }
  }
  // An all-to-all(v) of `rows` received rows of `row_bytes` over the stage group: decode's fixed
  // capacity gives every peer the own block's rows (fill_repeated); prefill's blocks differ, and
  // each peer's is copied apart (priced at one copy a peer of the mean block).
  void emulated_alltoall(int64_t rows, int64_t row_bytes) {
    const int64_t group = g_.plan.stage_size(), block = rows / group * row_bytes;
    if (!shape_.prefill) {
      emulated_fill(block, group);
    } else {
      for (int64_t p = 0; p < group; ++p) emulated_copy(block);
    }
  }

  void layer(bool first_local, int64_t moe_index) {
    const int64_t H = c_.hidden_size;
    memory_kernel((first_local ? 2 : 4) * T_ * H * act_);  // (add_)rmsnorm
    attention();
    memory_kernel(4 * T_ * H * act_);  // add_rmsnorm after attention
    if (moe_index < 0)
      swiglu(s_.mlp_col_count);
    else
      moe(moe_index);
    tp_allreduce(T_ * H * act_);
  }

  void attention() {
    const int64_t H = c_.hidden_size, hd = c_.head_dim;
    const int64_t q = s_.q_head_count * hd, kv = s_.kv_head_count * hd;
    kernel(cost_.gemm_s(T_, q + 2 * kv, H));  // one QKV projection
    if (c_.clip_qkv > 0) memory_kernel(2 * T_ * (q + 2 * kv) * act_);
    if (c_.qk_norm == QkNorm::WholeProjection && g_.plan.tp > 1) {
      // Normed apart with the group's sums, four launches a projection as forward.cpp makes
      // them: take_columns, row_sumsq, (the all-reduce of the sums), rmsnorm_with_sumsq,
      // copy_columns back into qkv.
      for (int64_t cols : {q, kv}) {
        memory_kernel(2 * T_ * cols * act_);
        memory_kernel(T_ * cols * act_);
        tp_allreduce(T_ * kF32);
        memory_kernel(2 * T_ * cols * act_);
        memory_kernel(2 * T_ * cols * act_);
      }
    }
    // attention_inputs: QK-norm, RoPE and the KV append (one kernel on CUDA: q, k, v read; q
    // written, k and v into the cache; on the CPU nine ops and the rotation angles' sin and cos).
    kernel(cost_.attention_inputs_s(T_, s_.q_head_count, s_.kv_head_count, hd, 2 * T_ * (q + 2 * kv) * act_));
    kernel(cost_.attention_s(T_, shape_.context, s_.q_head_count, s_.kv_head_count, hd, shape_.prefill));
    kernel(cost_.gemm_s(T_, H, q));  // o
    tp_allreduce(T_ * H * act_);
  }

  void swiglu(int64_t cols) {
    const int64_t H = c_.hidden_size;
    kernel(cost_.gemm_s(T_, 2 * cols, H) + cost_.gemm_s(T_, H, cols), 2);
  }

  void moe(int64_t moe_index) {
    const int64_t H = c_.hidden_size, E = c_.num_experts, k = c_.top_k;
    kernel(cost_.gemm_s(T_, E, H));                           // router (float32 logits)
    memory_kernel(T_ * E * kF32 + T_ * k * (kI32 + kF32));    // router_topk
    const ExpertWork work = expert_work(moe_index);
    if (g_.plan.dp > 1) dispatch(work.busiest_rows);
    kernel(work.busiest_s, 2);
    out_.imbalance_s += work.busiest_s - work.mean_s;
    if (g_.plan.dp > 1) {
      memory_kernel(T_ * H * act_);                                  // fill_zero
      memory_kernel(3 * dispatch_rows(work.busiest_rows) * H * act_);  // scatter_add_rows
    }
    if (s_.shared_col_count > 0) {
      swiglu(s_.shared_col_count);
      memory_kernel(3 * T_ * H * act_);  // add (sigmoid-gated) the shared expert
    }
  }

  // The grouped expert GEMMs of every expert set for this layer: the busiest set's time (every
  // set waits for it at the next collective) and the mean over sets.
  struct ExpertWork {
    double busiest_s = 0, mean_s = 0;
    double busiest_rows = 0;  // rows the busiest set's rank computes
  };
  ExpertWork expert_work(int64_t moe_index) const {
    const Plan& p = g_.plan;
    const int64_t E = c_.num_experts, per_set = E / p.ep;
    // Tokens each set sees: its replica's (dp = 1), or every replica's through the dispatch.
    const double tokens = static_cast<double>(T_) * p.dp;
    const bool uniform = shares_.empty();
    ExpertWork w;
    for (int set = 0; set < (uniform ? 1 : p.ep); ++set) {
      double rows = 0, active = 0;
      for (int64_t e = set * per_set; e < (set + 1) * per_set; ++e) {
        const double share = uniform ? static_cast<double>(c_.top_k) / E
                                     : shares_[static_cast<size_t>(moe_index)][static_cast<size_t>(e)];
        rows += tokens * share;
        active += 1 - std::pow(1 - std::min(share, 1.0), tokens);  // hit by at least one token
      }
      const double s = grouped_s(rows, active);
      if (s >= w.busiest_s) w.busiest_s = s, w.busiest_rows = rows;
      w.mean_s += s / (uniform ? 1 : p.ep);
    }
    return w;
  }

  // rows: the set's expected rows, over `active` experts (the per-expert GEMM path and the tiles
  // alike are priced at the mean rows an active expert).
  double grouped_s(double rows, double active) const {
    if (rows <= 0) return 0;
    const int64_t H = c_.hidden_size, cols = s_.expert_col_count, call = expert_call_tokens(rows);
    // The dispatch hands the expert call its entries one slot each; one replica's call has top_k.
    const int64_t slots = g_.plan.dp > 1 ? 1 : c_.top_k;
    const bool by_gemms =
        shape_.expert_gemms && expert_call_by_gemms(call, slots, c_.num_experts / g_.plan.ep, !in_graph_);
    const int64_t experts = std::max<int64_t>(1, std::llround(active));
    const int64_t per_expert =
        std::max<int64_t>(1, std::llround(rows / static_cast<double>(experts)));
    return cost_.grouped_gemm_s(per_expert, experts, 2 * cols, H, call, by_gemms) +
           cost_.grouped_gemm_s(per_expert, experts, H, cols, call, by_gemms);
  }

  // Tokens that pick the kernels of the rank's moe_experts call: the replica's own tokens with one
  // replica, else the dispatch's received entries (one slot each); in decode those are mostly
  // padding and the call is told the rows uniform routing gives (forward.cpp's route_fixed),
  // which pick.
  int64_t expert_call_tokens(double rows) const {
    const Plan& p = g_.plan;
    const int64_t per_set = c_.num_experts / p.ep;
    if (p.dp == 1) {  // every slot of the replica, of which this set's expected (forward.cpp)
      if (p.ep == 1) return T_;
      return expert_call_planned_tokens(T_, expected_set_slots(T_ * c_.top_k, per_set, c_.num_experts), c_.top_k);
    }
    const int64_t received = dispatch_rows(rows);
    if (shape_.prefill) return received;
    return expert_call_planned_tokens(received, expected_set_slots(T_ * p.dp * c_.top_k, per_set, c_.num_experts), 1);
  }

  // Entries this rank sends in the dispatch (forward.cpp): a decode step's fixed capacity for
  // every peer, or in prefill one entry per (token of its share, chosen expert, shard holder).
  int64_t dispatch_rows(double received_rows) const {
    const Plan& p = g_.plan;
    const int64_t share = ceil_div(T_, p.tp), k = c_.top_k;
    if (!shape_.prefill) return p.stage_size() * share * std::min<int64_t>(k, c_.num_experts / p.ep);
    return std::max<int64_t>(share * k * p.expert_shards(), std::llround(received_rows));
  }

  void dispatch(double received_rows) {
    const int64_t H = c_.hidden_size, rows = dispatch_rows(received_rows);
    const int group = g_.plan.stage_size();
    if (shape_.prefill) out_.expert_comm_s += cost_.alltoall_s(group * kI64, group, g_.stage);  // counts
    // pack_dispatch (decode's fixed capacity: route_fixed): the step's ids and weights read, each
    // entry's row, expert and scale written. Prefill routes on the host (route_with_counts).
    const int64_t k = c_.top_k;
    if (!shape_.prefill) memory_kernel(T_ * k * (kI32 + kF32) + rows * (2 * kI32 + kF32));
    memory_kernel(2 * rows * H * act_);  // gather_rows
    out_.expert_comm_s += 2 * cost_.alltoall_s(rows * H * act_, group, g_.stage) +  // there and back
                          cost_.alltoall_s(rows * kI32, group, g_.stage);            // expert ids
    emulated_alltoall(rows, H * act_);  // the rows there
    emulated_alltoall(rows, kI32);      // their expert ids
    emulated_alltoall(rows, H * act_);  // and the results back
  }

  void logits() {
    const int64_t H = c_.hidden_size, V = c_.vocab_size, rows = s_.vocab_rows, L = seqs_;
    const int tp = g_.plan.tp;
    memory_kernel(2 * L * H * act_);  // gather the logit rows
    memory_kernel(2 * L * H * act_);  // final norm
    kernel(cost_.gemm_s(L, rows, H));
    memory_kernel(L * rows * (act_ + kF32));  // to float32
    if (tp > 1) {
      // An all-gather of slices of b bytes moves what an all-to-all of tp * b bytes per rank does.
      out_.tp_comm_s += cost_.alltoall_s(tp * L * rows * kF32, tp, g_.tp);
      emulated_fill(L * rows * kF32, tp);  // the emulated allgather: the own slice in every slot
      for (int r = 0; r < tp; ++r) memory_kernel(2 * L * (V / tp) * kF32);  // copy_columns
    }
    kernel(cost_.sampling_s(L, V, L * V * kF32));  // argmax (greedy; sampling reads more), ids to the host
  }

  const PlanGeometry& g_;
  const ModelConfig& c_;
  const ShardSpec& s_;
  const ExpertShares& shares_;
  const CostModel& cost_;
  const StepShape& shape_;
  const int64_t seqs_, T_;
  const bool in_graph_;
  const int64_t act_;  // bytes of one activation element
  const bool pipelined_;
  LaunchPipeline real_, emulated_;  // pipelined_: the real rank's ops; with the emulation's copies
  StepCost out_;
};

void add_work(StepCost& into, const StepCost& part) {
  into.compute_s += part.compute_s;
  into.kernel_overhead_s += part.kernel_overhead_s;
  into.tp_comm_s += part.tp_comm_s;
  into.expert_comm_s += part.expert_comm_s;
  into.imbalance_s += part.imbalance_s;
  into.host_s += part.host_s;
  into.emulation_s += part.emulation_s;
}

}  // namespace

ExpertShares expert_shares_from_counts(const ModelConfig& c, const std::vector<std::vector<int64_t>>& counts,
                                       const std::string& source) {
  MOETRON_CHECK(static_cast<int64_t>(counts.size()) == c.num_moe_layers(),
                source << ": expert loads for " << counts.size() << " MoE layers, the model has "
                       << c.num_moe_layers());
  ExpertShares shares;
  for (size_t l = 0; l < counts.size(); ++l) {
    MOETRON_CHECK(static_cast<int64_t>(counts[l].size()) == c.num_experts,
                  source << ": MoE layer " << l << " has loads for " << counts[l].size() << " experts, the model has "
                         << c.num_experts);
    double total = 0;
    for (int64_t n : counts[l]) {
      MOETRON_CHECK(n >= 0, source << ": MoE layer " << l << " has a negative expert load");
      total += static_cast<double>(n);
    }
    std::vector<double> row(counts[l].size(), static_cast<double>(c.top_k) / c.num_experts);
    if (total > 0)
      for (size_t e = 0; e < row.size(); ++e) row[e] = static_cast<double>(counts[l][e]) / total * c.top_k;
    shares.push_back(std::move(row));
  }
  return shares;
}

StepCost step_cost(const PlanGeometry& g, const ExpertShares& shares, const StepShape& shape,
                   const CostModel& cost) {
  const Plan& p = g.plan;
  const int M = std::max(shape.micro_batches, 1);
  const int64_t H = g.config->hidden_size;
  // Micro-batch i holds part i of the step's sequences; each stage's cost per size, once.
  std::vector<int64_t> sizes;
  for (int i = 0; i < M; ++i) sizes.push_back(split_range(shape.sequences, M, i).size());
  std::vector<std::map<int64_t, StepCost>> priced(static_cast<size_t>(p.pp));
  auto stage_cost = [&](int s, int64_t n) -> const StepCost& {
    auto& memo = priced[static_cast<size_t>(s)];
    auto it = memo.find(n);
    if (it == memo.end()) it = memo.emplace(n, n == 0 ? StepCost{} : StageForward(g, shares, cost, s, shape, n).run()).first;
    return it->second;
  };
  // Blocking sends between stages: micro-batch i leaves stage s when stage s has finished i - 1
  // and received i from stage s - 1. (Empty micro-batches cost nothing: with one replica the
  // engine skips them; with several their kernels have no work.)
  std::vector<double> done(static_cast<size_t>(p.pp), 0.0);
  for (int i = 0; i < M; ++i) {
    const int64_t n = sizes[static_cast<size_t>(i)];
    const double hop = n == 0 ? 0 : cost.send_recv_s(n * shape.tokens_per_sequence * H * shape.activation_bytes, g.pipeline);
    double arrived = 0;
    for (int s = 0; s < p.pp; ++s) {
      const double start = std::max(done[static_cast<size_t>(s)], s == 0 ? 0.0 : arrived + hop);
      done[static_cast<size_t>(s)] = start + stage_cost(s, n).total_s();
      arrived = done[static_cast<size_t>(s)];
    }
  }
  // The busiest stage's work, and what the pipeline adds around it.
  StepCost step;
  double busiest = -1;
  int busiest_stage = 0;
  for (int s = 0; s < p.pp; ++s) {
    StepCost work;
    for (int64_t n : sizes) add_work(work, stage_cost(s, n));
    if (work.total_s() > busiest) busiest = work.total_s(), step = work, busiest_stage = s;
  }
  // An emulated stage's pipeline stand-ins, a copy a micro-batch each way: send copies the
  // activations into scratch, recv fills them from the stand-in (eager: pp > 1 never records).
  const int links = (busiest_stage > 0 ? 1 : 0) + (busiest_stage < p.pp - 1 ? 1 : 0);  // 0 at pp = 1
  for (int64_t n : sizes) {
    const int64_t hop_bytes = n * shape.tokens_per_sequence * H * shape.activation_bytes;
    if (n > 0 && links > 0) step.emulation_s += links * (cost.copy_s(hop_bytes) + cost.kernel_overhead_s(false));
  }
  const double pipeline_extra = done.back() - busiest;
  int64_t hops_bytes = 0;
  for (int64_t n : sizes) hops_bytes = std::max(hops_bytes, n * shape.tokens_per_sequence * H * shape.activation_bytes);
  step.pipeline_comm_s = p.pp > 1 ? std::min(pipeline_extra, (p.pp - 1) * cost.send_recv_s(hops_bytes, g.pipeline)) : 0;
  step.bubble_s = std::max(0.0, pipeline_extra - step.pipeline_comm_s);

  // Once a step (engine.cpp): the totals agreed over the world, the decode dispatch sizes
  // agreed between replicas, the sampled tokens broadcast over the replica.
  step.host_sync_s = cost.allreduce_s(3 * kI64, p.world_size(), g.world) +
                     cost.broadcast_s(shape.sequences * kI64, p.pp * p.tp, g.replica);
  if (p.dp > 1 && !shape.prefill) step.host_sync_s += cost.allreduce_s(M * kI64, p.world_size(), g.world);
  return step;
}

}  // namespace moetron
