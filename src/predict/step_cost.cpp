#include "moetron/predict/step_cost.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <utility>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

std::string describe_device_sharing(double ranks_per_device) {
  if (ranks_per_device <= 1) return "";
  std::ostringstream os;
  os.precision(3);
  os << ranks_per_device << " ranks a device";
  return os.str();
}

namespace {

// Activations (hidden rows, the messages between ranks) take the backend's activation element
// size (StepShape::activation_bytes: bf16 on CUDA, f32 on the CPU); these are fixed.
constexpr int64_t kF32 = 4, kI32 = 4, kI64 = 8;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A stage's priced forward of one micro-batch: its cost and, when traced, the ops that make it.
struct StagePriced {
  StepCost cost;
  std::vector<PricedOp> ops;
};

// The cost of one stage's forward of one micro-batch, accumulated kernel by kernel in the order
// forward.cpp runs them. Every Ops call is at least one kernel; swiglu_mlp and moe_experts are
// at least two (the gate/up and the down GEMM). Every amount goes through charge(), which is
// also what a trace records, so the traced ops sum to the cost.
class StageForward {
 public:
  // note: the cost model's source note (attached by step_cost) when tracing, else nullptr.
  StageForward(const PlanGeometry& g, const ExpertShares& shares, const CostModel& cost, int stage,
               const StepShape& shape, int64_t sequences, std::string* note)
      : g_(g), c_(*g.config), s_(g.stages[static_cast<size_t>(stage)]), shares_(shares), cost_(cost),
        shape_(shape), seqs_(sequences), T_(sequences * shape.tokens_per_sequence),
        in_graph_(!shape.prefill && shape.recordable && g.plan.pp == 1), act_(shape.activation_bytes),
        pipelined_(!in_graph_ && !shape.prefill && shape.launches_overlap), stage_(stage), note_(note) {}

  StagePriced run() {
    const int64_t H = c_.hidden_size;
    if (s_.first_stage) memory_kernel("embed", 2 * T_ * H * act_);
    int64_t moe_index = 0;
    for (int64_t l = 0; l < c_.num_layers; ++l) {
      const bool moe = c_.layer_is_moe[static_cast<size_t>(l)];
      if (l >= s_.layer_begin && l < s_.layer_end) layer(l == s_.layer_begin, moe ? moe_index : -1);
      if (moe) ++moe_index;
    }
    memory_kernel("last residual add", 3 * T_ * H * act_);
    if (s_.last_stage) logits();
    // engine.cpp's run_micro_batch around the forward: reset_temps, the batch layout built and
    // uploaded, the routing counted over the stage's layers (the counting rank: tp rank 0).
    const int64_t layers = s_.layer_end - s_.layer_begin;
    StepCost host;
    host.host_s = cost_.host_step_s(T_, layers, std::max<int64_t>(c_.num_experts, 1), std::max<int64_t>(c_.top_k, 1));
    OpShape shape;
    shape.rows = T_;
    charge("host bookkeeping (not a kernel)", 0, shape, note(), host);
    return std::move(out_);
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

  // The cost model's note on the answer just priced (consumed: the next answer writes its own).
  std::string note() const {
    if (note_ == nullptr) return "";
    std::string text = std::move(*note_);
    note_->clear();
    return text;
  }
  void charge(const char* name, int kernels, const OpShape& shape, std::string source, const StepCost& amount) {
    out_.cost += amount;
    if (note_ != nullptr) out_.ops.push_back({name, kernels, shape, std::move(source), amount, stage_});
  }

  // One kernel of `seconds` through the pipelined launches, `launch` of host time after the last:
  // the device's idle time it adds (real ops) is a kernel gap, and what it adds to the emulated
  // rank's device beyond that is emulation.
  void enqueue(double seconds, double launch, bool real_op, StepCost& amount) {
    const double device_gap = cost_.kernel_overhead_s(true);
    const double real_before = real_.device_s, emulated_before = emulated_.device_s;
    if (real_op) real_.enqueue(launch, device_gap, seconds);
    emulated_.enqueue(launch, device_gap, seconds);
    const double real_added = real_.device_s - real_before;
    if (real_op) amount.kernel_overhead_s += real_added - seconds;
    amount.emulation_s += (emulated_.device_s - emulated_before) - real_added;
  }

  // The host's time to launch each of an op's `count` kernels, made by `calls` calls of
  // `family`: the calls' cost (CostModel::launch_s) shared by the kernels, and never less than an
  // eager launch gap a kernel (the cheapest op's).
  double launch_per_kernel(LaunchFamily family, int calls, int count) const {
    return std::max(cost_.launch_s(family) * calls, cost_.kernel_overhead_s(false) * count) / count;
  }

  // An op of `count` kernels of `seconds` in all, made by `calls` calls of its family (the host's
  // side of an eagerly pipelined launch: launch_per_kernel).
  void priced_kernel(double seconds, int count, const char* name, const OpShape& shape, std::string source,
                     LaunchFamily family = LaunchFamily::kMemory, int calls = 1) {
    StepCost amount;
    amount.compute_s = seconds;
    if (!pipelined_) {
      amount.kernel_overhead_s = count * cost_.kernel_overhead_s(in_graph_);
    } else {
      const double launch = launch_per_kernel(family, calls, count);
      for (int i = 0; i < count; ++i) enqueue(seconds / count, launch, true, amount);
    }
    note();  // the gap's note: the trace gives it once (StepTrace::gaps)
    charge(name, count, shape, std::move(source), amount);
  }
  void kernel(double seconds, const char* name, const OpShape& shape, LaunchFamily family = LaunchFamily::kMemory) {
    priced_kernel(seconds, 1, name, shape, note(), family);
  }
  void memory_kernel(const char* name, int64_t bytes) {
    OpShape shape;
    shape.bytes = bytes;
    kernel(cost_.memory_bound_s(bytes), name, shape);
  }
  void gemm(const char* name, int64_t m, int64_t n, int64_t k) {
    const double seconds = cost_.gemm_s(m, n, k);
    kernel(seconds, name, gemm_shape(m, n, k), LaunchFamily::kGemm);
  }
  static OpShape gemm_shape(int64_t m, int64_t n, int64_t k) {
    OpShape shape;
    shape.rows = m, shape.n = n, shape.k = k;
    return shape;
  }
  // A collective's time, charged to `part` of the step.
  void collective(const char* name, double StepCost::*part, double seconds, int64_t bytes, int ranks) {
    StepCost amount;
    amount.*part = seconds;
    OpShape shape;
    shape.bytes = bytes, shape.ranks = ranks;
    charge(name, 0, shape, note(), amount);
  }
  void tp_allreduce(const char* name, int64_t bytes) {
    if (g_.plan.tp == 1) return;  // no group: nothing to price
    collective(name, &StepCost::tp_comm_s, cost_.allreduce_s(bytes, g_.plan.tp, g_.tp), bytes, g_.plan.tp);
    emulated_copy("emulated copy: tp all-reduce", bytes);  // allreduce_sum: the buffer into scratch
  }

  // An emulated rank's stand-ins for its collectives (EmulatedCommunicator, assumption 13): device
  // copies, each Ops::copy of `bytes` (CostModel::copy_s) with its gap. Kept apart in
  // emulation_s: a real rank moves these bytes in the collective, priced in *_comm_s.
  void emulated_copy(const char* name, int64_t bytes, int count = 1) {
    if (bytes <= 0) return;
    emulated_kernel(name, cost_.copy_s(bytes), bytes, LaunchFamily::kCopy, count);
  }
  // `count` alike kernels only an emulated rank runs, of `seconds` each (priced just before: its
  // note is the source), each with its gap; `bytes` (each) for the trace. Outside the launch
  // pipeline they are one charge (prefill's copy a peer: up to a stage's 1,024 a layer).
  void emulated_kernel(const char* name, double seconds, int64_t bytes, LaunchFamily family, int count = 1) {
    const std::string source = note();
    StepCost amount;
    if (pipelined_) {
      for (int i = 0; i < count; ++i) enqueue(seconds, launch_per_kernel(family, 1, 1), false, amount);
    } else {
      amount.emulation_s = count * (seconds + cost_.kernel_overhead_s(in_graph_));
    }
    note();
    OpShape shape;
    shape.bytes = bytes;
    charge(name, count, shape, source, amount);
  }
  // `group` blocks of `bytes` side by side, as EmulatedCommunicator::fill_repeated makes them (the
  // allgather, and the all-to-all whose blocks are all the own block's size): the block copied
  // once, then what is filled doubled, 1 + ceil(log2 group) copies.
  void emulated_fill(const char* name, int64_t bytes, int64_t group) {
    emulated_copy(name, bytes);
    for (int64_t filled = 1; filled < group;) {
      const int64_t n = std::min(filled, group - filled);
      emulated_copy(name, n * bytes);
      filled += n;
    }
  }
  // An all-to-all(v) of `rows` received rows of `row_bytes` over the stage group: decode's fixed
  // capacity gives every peer the own block's rows (fill_repeated); prefill's blocks differ, and
  // each peer's is copied apart (priced at one copy a peer of the mean block).
  void emulated_alltoall(const char* name, int64_t rows, int64_t row_bytes) {
    const int64_t group = g_.plan.stage_size(), block = rows / group * row_bytes;
    if (!shape_.prefill) {
      emulated_fill(name, block, group);
    } else {
      emulated_copy(name, block, static_cast<int>(group));
    }
  }

  void layer(bool first_local, int64_t moe_index) {
    const int64_t H = c_.hidden_size;
    memory_kernel(first_local ? "rmsnorm" : "add_rmsnorm", (first_local ? 2 : 4) * T_ * H * act_);
    attention();
    memory_kernel("add_rmsnorm", 4 * T_ * H * act_);  // after attention
    if (moe_index < 0)
      swiglu("dense mlp (gate/up + down gemm)", s_.mlp_col_count);
    else
      moe(moe_index);
    tp_allreduce("tp all-reduce: mlp out", T_ * H * act_);
  }

  void attention() {
    const int64_t H = c_.hidden_size, hd = c_.head_dim;
    const int64_t q = s_.q_head_count * hd, kv = s_.kv_head_count * hd;
    gemm("qkv gemm", T_, q + 2 * kv, H);  // one QKV projection
    if (c_.clip_qkv > 0) memory_kernel("clip qkv", 2 * T_ * (q + 2 * kv) * act_);
    if (c_.qk_norm == QkNorm::WholeProjection && g_.plan.tp > 1) {
      // Normed apart with the group's sums, four launches a projection as forward.cpp makes
      // them: take_columns, row_sumsq, (the all-reduce of the sums), rmsnorm_with_sumsq,
      // copy_columns back into qkv.
      for (int64_t cols : {q, kv}) {
        memory_kernel("qk-norm take_columns", 2 * T_ * cols * act_);
        memory_kernel("qk-norm row_sumsq", T_ * cols * act_);
        tp_allreduce("tp all-reduce: qk-norm sums", T_ * kF32);
        memory_kernel("qk-norm rmsnorm_with_sumsq", 2 * T_ * cols * act_);
        memory_kernel("qk-norm copy_columns", 2 * T_ * cols * act_);
      }
    }
    // attention_inputs: QK-norm, RoPE and the KV append (one kernel on CUDA: q, k, v read; q
    // written, k and v into the cache; on the CPU nine ops and the rotation angles' sin and cos).
    const int64_t bytes = 2 * T_ * (q + 2 * kv) * act_;
    const double inputs = cost_.attention_inputs_s(T_, s_.q_head_count, s_.kv_head_count, hd, bytes);
    OpShape shape;
    shape.rows = T_, shape.bytes = bytes;
    kernel(inputs, "attention inputs (qk-norm, rope, kv append)", shape);
    const double seconds = cost_.attention_s(T_, shape_.context, s_.q_head_count, s_.kv_head_count, hd, shape_.prefill);
    shape.bytes = -1, shape.context = shape_.context, shape.n = s_.q_head_count, shape.k = s_.kv_head_count;
    kernel(seconds, "attention (n: q heads, k: kv heads)", shape, LaunchFamily::kAttention);
    gemm("o gemm", T_, H, q);
    tp_allreduce("tp all-reduce: attention out", T_ * H * act_);
  }

  void swiglu(const char* name, int64_t cols) {
    const int64_t H = c_.hidden_size;
    const double gate_up = cost_.gemm_s(T_, 2 * cols, H);
    const std::string gate_up_source = note();
    const double down = cost_.gemm_s(T_, H, cols);
    priced_kernel(gate_up + down, 2, name, gemm_shape(T_, 2 * cols, H), "gate/up " + gate_up_source + "; down " + note(),
                  LaunchFamily::kGemm, /*calls=*/2);
  }

  void moe(int64_t moe_index) {
    const int64_t H = c_.hidden_size, E = c_.num_experts, k = c_.top_k;
    gemm("router gemm", T_, E, H);                                          // float32 logits
    memory_kernel("router top-k", T_ * E * kF32 + T_ * k * (kI32 + kF32));
    const ExpertWork work = expert_work(moe_index);
    if (g_.plan.dp > 1) dispatch(work.busiest.rows);
    const ExpertCall& call = work.busiest;
    OpShape shape;
    shape.rows = call.per_expert, shape.experts = call.experts, shape.n = 2 * s_.expert_col_count, shape.k = H;
    shape.call_tokens = call.call_tokens;
    priced_kernel(call.seconds, 2, call.by_gemms ? "expert call by per-expert gemms (gate/up + down)"
                                                 : "expert call (gate/up + down)", shape, call.source,
                  LaunchFamily::kExperts);
    StepCost imbalance;
    imbalance.imbalance_s = call.seconds - work.mean_s;
    if (imbalance.imbalance_s != 0) charge("expert imbalance (part of compute)", 0, {}, "busiest set - mean", imbalance);
    if (g_.plan.dp > 1) {
      memory_kernel("fill_zero", T_ * H * act_);
      memory_kernel("scatter_add_rows", 3 * dispatch_rows(call.rows) * H * act_);
    }
    if (s_.shared_col_count > 0) {
      swiglu("shared expert mlp (gate/up + down gemm)", s_.shared_col_count);
      memory_kernel("shared expert gated add", 3 * T_ * H * act_);
    }
  }

  // One expert set's grouped GEMMs as priced, with what they were priced at.
  struct ExpertCall {
    double seconds = 0, rows = 0;  // rows: the set's expected rows
    int64_t per_expert = 0, experts = 0, call_tokens = 0;
    bool by_gemms = false;
    std::string source;
  };
  // The grouped expert GEMMs of every expert set for this layer: the busiest set's (every set
  // waits for it at the next collective) and the mean time over sets.
  struct ExpertWork {
    ExpertCall busiest;
    double mean_s = 0;
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
      ExpertCall call = grouped(rows, active);
      w.mean_s += call.seconds / (uniform ? 1 : p.ep);
      if (call.seconds >= w.busiest.seconds) w.busiest = std::move(call);
    }
    return w;
  }

  // rows: the set's expected rows, over `active` experts (the per-expert GEMM path and the tiles
  // alike are priced at the mean rows an active expert).
  ExpertCall grouped(double rows, double active) const {
    ExpertCall call;
    call.rows = rows;
    if (rows <= 0) return call;
    const int64_t H = c_.hidden_size, cols = s_.expert_col_count;
    call.call_tokens = expert_call_tokens(rows);
    // The dispatch hands the expert call its entries one slot each; one replica's call has top_k.
    const int64_t slots = g_.plan.dp > 1 ? 1 : c_.top_k;
    call.by_gemms = shape_.expert_gemms && expert_call_by_gemms(call.call_tokens, slots, c_.num_experts / g_.plan.ep,
                                                                H, cols, !in_graph_, cost_.expert_gemm_rule());
    call.experts = std::max<int64_t>(1, std::llround(active));
    call.per_expert = std::max<int64_t>(1, std::llround(rows / static_cast<double>(call.experts)));
    const double gate_up =
        cost_.grouped_gemm_s(call.per_expert, call.experts, 2 * cols, H, call.call_tokens, call.by_gemms);
    const std::string gate_up_source = note();
    call.seconds =
        gate_up + cost_.grouped_gemm_s(call.per_expert, call.experts, H, cols, call.call_tokens, call.by_gemms);
    if (note_ != nullptr) call.source = "gate/up " + gate_up_source + "; down " + note();
    return call;
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
    const auto all_to_all = [&](const char* name, int64_t bytes) {
      collective(name, &StepCost::expert_comm_s, cost_.alltoall_s(bytes, group, g_.stage), bytes, group);
    };
    if (shape_.prefill) all_to_all("all-to-all: dispatch counts", group * kI64);
    // pack_dispatch (decode's fixed capacity: route_fixed): the step's ids and weights read, each
    // entry's row, expert and scale written. Prefill routes on the host (route_with_counts).
    const int64_t k = c_.top_k;
    if (!shape_.prefill) memory_kernel("pack_dispatch", T_ * k * (kI32 + kF32) + rows * (2 * kI32 + kF32));
    memory_kernel("gather_rows", 2 * rows * H * act_);
    all_to_all("all-to-all: rows to the experts", rows * H * act_);
    all_to_all("all-to-all: their expert ids", rows * kI32);
    all_to_all("all-to-all: results back", rows * H * act_);
    emulated_alltoall("emulated copy: all-to-all rows", rows, H * act_);
    emulated_alltoall("emulated copy: all-to-all expert ids", rows, kI32);
    emulated_peers(rows);
    emulated_alltoall("emulated copy: all-to-all results back", rows, H * act_);
  }

  // An emulated rank's peers, routing as their replicas would (forward.cpp's route_as_peers,
  // under --emulate-peers rotated, the default, or spread): one pack_from_peers of every peer's block of
  // `rows` entries (each peer reads its share's ids, writes its block's rows and experts), then
  // the rows gathered and the expert ids copied over the all-to-all's copies.
  void emulated_peers(int64_t rows) {
    const int64_t H = c_.hidden_size, group = g_.plan.stage_size();
    const int64_t pack = group * ceil_div(T_, g_.plan.tp) * c_.top_k * kI32 + rows * 2 * kI32;
    emulated_kernel("emulated peers: pack_from_peers", cost_.memory_bound_s(pack), pack, LaunchFamily::kMemory);
    emulated_kernel("emulated peers: gather_rows", cost_.memory_bound_s(2 * rows * H * act_), 2 * rows * H * act_,
                    LaunchFamily::kMemory);
    emulated_copy("emulated peers: copy expert ids", rows * kI32);
  }

  void logits() {
    const int64_t H = c_.hidden_size, V = c_.vocab_size, rows = s_.vocab_rows, L = seqs_;
    const int tp = g_.plan.tp;
    memory_kernel("gather logit rows", 2 * L * H * act_);
    memory_kernel("final norm", 2 * L * H * act_);
    gemm("lm head gemm", L, rows, H);
    memory_kernel("logits to float32", L * rows * (act_ + kF32));
    if (tp > 1) {
      // An all-gather of slices of b bytes moves what an all-to-all of tp * b bytes per rank does.
      const int64_t bytes = tp * L * rows * kF32;
      collective("tp allgather: logits", &StepCost::tp_comm_s, cost_.alltoall_s(bytes, tp, g_.tp), bytes, tp);
      // The emulated allgather: the own slice in every slot.
      emulated_fill("emulated copy: logits allgather", L * rows * kF32, tp);
      for (int r = 0; r < tp; ++r) memory_kernel("copy_columns (logits)", 2 * L * (V / tp) * kF32);
    }
    // argmax (greedy; sampling reads more), ids to the host
    const double sampling = cost_.sampling_s(L, V, L * V * kF32);
    OpShape shape;
    shape.rows = L, shape.n = V, shape.bytes = L * V * kF32;
    kernel(sampling, "sampling (argmax, n: vocab)", shape);
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
  const int stage_;
  std::string* const note_;         // the cost model's note while tracing, else nullptr
  LaunchPipeline real_, emulated_;  // pipelined_: the real rank's ops; with the emulation's copies
  StagePriced out_;
};

// Attaches a note to the cost model for one traced walk, and detaches it however the walk ends.
class NoteAttachment {
 public:
  NoteAttachment(const CostModel& cost, std::string* note) : cost_(cost), attached_(note != nullptr) {
    if (attached_) cost_.attach_source_note(note);
  }
  ~NoteAttachment() {
    if (attached_) cost_.attach_source_note(nullptr);
  }
  NoteAttachment(const NoteAttachment&) = delete;
  NoteAttachment& operator=(const NoteAttachment&) = delete;

 private:
  const CostModel& cost_;
  bool attached_;
};

// How the step's kernel gaps were priced, with the gaps' sources, for the trace's header.
std::string describe_gaps(const CostModel& cost, const StepShape& shape, const Plan& plan, std::string& note) {
  const bool in_graph = !shape.prefill && shape.recordable && plan.pp == 1;
  const bool pipelined = !in_graph && !shape.prefill && shape.launches_overlap;
  std::ostringstream os;
  os.precision(3);
  const double node = cost.kernel_overhead_s(true);
  const std::string node_source = note;
  const double launch = cost.kernel_overhead_s(false);
  os << (in_graph ? "decode replayed as a CUDA graph: one graph node's gap a kernel"
         : pipelined ? "eager decode, launches overlapping kernels: a gap is the device's idle time"
                     : "eager: one launch gap a kernel")
     << "; graph node " << node * 1e6 << " us (" << node_source << "), launch " << launch * 1e6 << " us (" << note
     << ")";
  if (pipelined) {  // what each op family's call costs the host (CostModel::launch_s)
    const std::pair<LaunchFamily, const char*> families[] = {{LaunchFamily::kMemory, "memory"},
                                                             {LaunchFamily::kGemm, "gemm"},
                                                             {LaunchFamily::kExperts, "experts"},
                                                             {LaunchFamily::kAttention, "attention"},
                                                             {LaunchFamily::kCopy, "copy"}};
    os << "; host a call:";
    for (const auto& [family, name] : families) os << " " << name << " " << cost.launch_s(family) * 1e6 << " us";
    note.clear();
  }
  return os.str();
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

StepCost& StepCost::operator+=(const StepCost& o) {
  compute_s += o.compute_s;
  kernel_overhead_s += o.kernel_overhead_s;
  tp_comm_s += o.tp_comm_s;
  expert_comm_s += o.expert_comm_s;
  pipeline_comm_s += o.pipeline_comm_s;
  bubble_s += o.bubble_s;
  host_sync_s += o.host_sync_s;
  imbalance_s += o.imbalance_s;
  host_s += o.host_s;
  emulation_s += o.emulation_s;
  sharing_s += o.sharing_s;
  return *this;
}

StepCost step_cost(const PlanGeometry& g, const ExpertShares& shares, const StepShape& shape,
                   const CostModel& cost, StepTrace* trace) {
  const Plan& p = g.plan;
  const int M = std::max(shape.micro_batches, 1);
  const int64_t H = g.config->hidden_size;
  std::string note;
  std::string* const noting = trace != nullptr ? &note : nullptr;
  const NoteAttachment attachment(cost, noting);
  // Micro-batch i holds part i of the step's sequences; each stage's cost per size, once.
  std::vector<int64_t> sizes;
  for (int i = 0; i < M; ++i) sizes.push_back(split_range(shape.sequences, M, i).size());
  std::vector<std::map<int64_t, StagePriced>> priced(static_cast<size_t>(p.pp));
  auto stage_priced = [&](int s, int64_t n) -> const StagePriced& {
    auto& memo = priced[static_cast<size_t>(s)];
    auto it = memo.find(n);
    if (it == memo.end())
      it = memo.emplace(n, n == 0 ? StagePriced{} : StageForward(g, shares, cost, s, shape, n, noting).run()).first;
    return it->second;
  };
  auto stage_cost = [&](int s, int64_t n) -> const StepCost& { return stage_priced(s, n).cost; };
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
    for (int64_t n : sizes) work += stage_cost(s, n);
    if (work.total_s() > busiest) busiest = work.total_s(), step = work, busiest_stage = s;
  }
  if (trace != nullptr) {
    *trace = StepTrace{};
    trace->reported_stage = busiest_stage;
    for (int s = 0; s < p.pp; ++s)
      for (int64_t n : sizes) {
        const std::vector<PricedOp>& ops = stage_priced(s, n).ops;
        trace->ops.insert(trace->ops.end(), ops.begin(), ops.end());
      }
    note.clear();
    trace->gaps = describe_gaps(cost, shape, p, note);
    note.clear();
  }
  // The step's own parts, each added to `step` and, when traced, recorded.
  const auto charge = [&](const char* name, int kernels, int64_t bytes, int ranks, const StepCost& amount) {
    step += amount;
    if (trace == nullptr) return;
    OpShape op_shape;
    op_shape.bytes = bytes, op_shape.ranks = ranks;
    trace->ops.push_back({name, kernels, op_shape, std::move(note), amount, -1});
    note.clear();
  };
  // An emulated stage's pipeline stand-ins, a copy a micro-batch each way: send copies the
  // activations into scratch, recv fills them from the stand-in (eager: pp > 1 never records).
  const int links = (busiest_stage > 0 ? 1 : 0) + (busiest_stage < p.pp - 1 ? 1 : 0);  // 0 at pp = 1
  for (int64_t n : sizes) {
    const int64_t hop_bytes = n * shape.tokens_per_sequence * H * shape.activation_bytes;
    if (n > 0 && links > 0) {
      StepCost copies;
      const double copy = cost.copy_s(hop_bytes);
      const std::string copy_source = note;  // before the gap's note replaces it
      copies.emulation_s = links * (copy + cost.kernel_overhead_s(false));
      note = copy_source;
      charge("emulated copy: pipeline hop", links, hop_bytes, -1, copies);
    }
  }
  const double pipeline_extra = done.back() - busiest;
  int64_t hops_bytes = 0;
  for (int64_t n : sizes) hops_bytes = std::max(hops_bytes, n * shape.tokens_per_sequence * H * shape.activation_bytes);
  if (p.pp > 1) {
    StepCost sends, bubble;
    sends.pipeline_comm_s = std::min(pipeline_extra, (p.pp - 1) * cost.send_recv_s(hops_bytes, g.pipeline));
    charge("pipeline sends (critical path)", 0, hops_bytes, 2, sends);
    bubble.bubble_s = std::max(0.0, pipeline_extra - sends.pipeline_comm_s);
    charge("pipeline bubble", 0, -1, -1, bubble);
  }

  // Once a step (engine.cpp): the totals agreed over the world, the decode dispatch sizes
  // agreed between replicas, the sampled tokens broadcast over the replica.
  StepCost sync;
  sync.host_sync_s = cost.allreduce_s(3 * kI64, p.world_size(), g.world);
  charge("host sync: step totals all-reduce (world)", 0, 3 * kI64, p.world_size(), sync);
  sync.host_sync_s = cost.broadcast_s(shape.sequences * kI64, p.pp * p.tp, g.replica);
  charge("host sync: sampled tokens broadcast (replica)", 0, shape.sequences * kI64, p.pp * p.tp, sync);
  if (p.dp > 1 && !shape.prefill) {
    sync.host_sync_s = cost.allreduce_s(M * kI64, p.world_size(), g.world);
    charge("host sync: dispatch sizes all-reduce (world)", 0, M * kI64, p.world_size(), sync);
  }
  // Ranks sharing the device (assumption 15): each of the others computes as much as this rank,
  // on the same device, which serves their kernels in turn. Priced by measurements they run in
  // lockstep (compute when it does, wait in the same collectives), so only its bubble leaves the
  // device to them; priced by floors, only the floor holds: the rest of the step may overlap them.
  if (shape.ranks_per_device > 1) {
    StepCost shared;
    const double s = shape.ranks_per_device;
    const bool floor = cost.prices_floors();
    shared.sharing_s = floor ? std::max(0.0, s * step.compute_s - step.total_s())
                             : std::max(0.0, (s - 1) * step.compute_s - step.bubble_s);
    if (trace != nullptr) {
      std::ostringstream why;
      why << describe_device_sharing(s) << ": "
          << (floor ? "the step at least ranks x compute" : "in lockstep, (ranks - 1) x compute less the bubble");
      note = why.str();
    }
    charge("ranks sharing the device: their kernels", 0, -1, -1, shared);
  }
  return step;
}

}  // namespace moetron
