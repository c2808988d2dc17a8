#include "moetron/bench/compute_bench.hpp"

#include <algorithm>
#include <chrono>
#include <sstream>

#include "attention_bench.hpp"
#include "bench_tensors.hpp"
#include "moetron/backend/expert_paths.hpp"
#include "moetron/bench/launch_family.hpp"
#include "moetron/core/error.hpp"
#include "moetron/parallel/plan.hpp"

namespace moetron {

namespace {

using bench_detail::float32_tensor;
using bench_detail::int32_tensor;
using bench_detail::leading;
using bench_detail::random_tensor;
using bench_detail::time_ops_call;
using bench_detail::time_ops_call_as_step;
using bench_detail::time_ops_recorded;

void gemms(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const DType act = ops.activation_dtype();
  const int64_t max_m = b.sizes.tokens.back();
  for (const auto& [n, k] : b.shapes.gemms) {
    const Tensor w = random_tensor(ops, act, {n, k}, 1);
    const Tensor x = random_tensor(ops, act, {max_m, k}, 2);
    const Tensor out = ops.alloc(act, {max_m, n});
    for (int64_t m : b.sizes.tokens) {
      const Tensor xm = leading(x, m * k, k);
      Tensor om = leading(out, m * n, n);
      table.add({n, k}, m, time_ops_call_as_step(ops, [&] { ops.linear(xm, w, nullptr, om); }, b.timing));
    }
  }
}

// Expert weights of `local` experts and input/output rows for calls of up to `rows` tokens.
struct ExpertOperands {
  ExpertWeights w;
  Tensor x, out;
};
ExpertOperands expert_operands(Ops& ops, int64_t local, int64_t hidden, int64_t cols, int64_t rows) {
  const DType act = ops.activation_dtype();
  ExpertOperands o;
  o.w.num_local = local;
  o.w.gate_up = random_tensor(ops, act, {local, 2 * cols, hidden}, 3);
  o.w.down = random_tensor(ops, act, {local, hidden, cols}, 4);
  o.x = random_tensor(ops, act, {rows, hidden}, 5);
  o.out = ops.alloc(act, {rows, hidden});
  return o;
}

// One moe_experts call as a step makes it: `tokens` tokens with `slots` slots each, weight 1,
// token t's slot j to expert (t * slots + j) mod experts (distinct within a token while slots <=
// experts), so the backend picks its kernel from the same token count as in a step. Its inputs
// are made here, once; the call refers to `o`, which must outlive it.
std::function<void()> expert_call(Ops& ops, const ExpertOperands& o, int64_t tokens, int64_t slots, int64_t experts) {
  const int64_t hidden = o.x.cols();
  std::vector<int32_t> ids(static_cast<size_t>(tokens * slots));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(static_cast<int64_t>(i) % experts);
  const Tensor id_t = int32_tensor(ops, ids, {tokens, slots});
  const Tensor weight_t = float32_tensor(ops, std::vector<float>(ids.size(), 1.0f), {tokens, slots});
  const Tensor xr = leading(o.x, tokens * hidden, hidden);
  Tensor out = leading(o.out, tokens * hidden, hidden);
  return [&ops, &o, id_t, weight_t, xr, out]() mutable { ops.moe_experts(xr, id_t, weight_t, o.w, out); };
}

Measurement time_expert_call(Ops& ops, const ComputeBench& b, const ExpertOperands& o, int64_t tokens,
                             int64_t slots, int64_t experts) {
  return time_ops_call(ops, expert_call(ops, o, tokens, slots, experts), b.timing);
}

// Calls of more than kExpertGemvMaxTokens tokens, one slot each, so `experts` experts get
// `per_expert` rows each: the tiles, and on CUDA, where expert_call_by_gemms says, the per-expert
// GEMMs (the cost model files each point by its path). Up to max_expert_rows slots.
void expert_gemms(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const int64_t local = b.sizes.experts.back();
  const int64_t max_rows = b.sizes.max_expert_rows;
  for (const auto& [hidden, cols] : b.shapes.experts) {
    const ExpertOperands o = expert_operands(ops, local, hidden, cols, max_rows);
    for (int64_t experts : b.sizes.experts) {
      for (int64_t per_expert : b.sizes.tokens_per_expert) {
        const int64_t rows = per_expert * experts;
        if (rows > max_rows) break;
        if (expert_call_is_gemv(rows)) continue;  // the other path: expert_gemvs
        table.add({hidden, cols, experts}, per_expert, time_expert_call(ops, b, o, rows, 1, experts));
      }
    }
  }
}

// The GEMV path: calls of `per_expert` <= kExpertGemvMaxTokens tokens, each picking the same
// `experts` experts (decode: a handful of tokens over many experts).
void expert_gemvs(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const int64_t local = b.sizes.experts.back();
  for (const auto& [hidden, cols] : b.shapes.experts) {
    const ExpertOperands o = expert_operands(ops, local, hidden, cols, kExpertGemvMaxTokens);
    for (int64_t experts : b.sizes.experts)
      for (int64_t per_expert : b.sizes.gemv_tokens)
        table.add({hidden, cols, experts}, per_expert, time_expert_call(ops, b, o, per_expert, experts, experts));
  }
}

// add_inplace, rmsnorm and rope over the model's widths, by bytes read + written.
void memory_kernels(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const ModelConfig& c = *b.config;
  const DType act = ops.activation_dtype();
  const int64_t es = static_cast<int64_t>(dtype_size(act)), H = c.hidden_size, max_m = b.sizes.tokens.back();
  const int64_t qw = c.q_width(), kw = c.kv_width();
  const Tensor a = random_tensor(ops, act, {max_m, H}, 6), d = random_tensor(ops, act, {max_m, H}, 7);
  const Tensor w = random_tensor(ops, act, {H}, 8), normed = ops.alloc(act, {max_m, H});
  const Tensor q = random_tensor(ops, act, {max_m, qw}, 9), k = random_tensor(ops, act, {max_m, kw}, 10);
  std::vector<int32_t> positions(static_cast<size_t>(max_m));
  for (size_t i = 0; i < positions.size(); ++i)
    positions[i] = static_cast<int32_t>(i % static_cast<size_t>(std::max<int64_t>(1, c.max_position_embeddings)));
  const Tensor pos = int32_tensor(ops, positions, {max_m});
  for (int64_t m : b.sizes.tokens) {
    Tensor am = leading(a, m * H, H), nm = leading(normed, m * H, H), qm = leading(q, m * qw, qw),
           km = leading(k, m * kw, kw);
    const Tensor dm = leading(d, m * H, H), pm = leading(pos, m);
    table.add({0}, 3 * m * H * es, time_ops_call_as_step(ops, [&] { ops.add_inplace(am, dm); }, b.timing));
    table.add({1}, 2 * m * H * es, time_ops_call_as_step(ops, [&] { ops.rmsnorm(am, w, 1e-6f, nm); }, b.timing));
    table.add({2}, 2 * m * (qw + kw) * es,
              time_ops_call_as_step(ops, [&] { ops.rope(qm, km, pm, c.head_dim, c.rope_theta); }, b.timing));
  }
}

// Greedy sampling as the engine's step makes it: the argmax of each row's logits over the whole
// vocabulary, and the ids to the host.
void sampling(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const int64_t V = b.config->vocab_size, max_rows = b.sizes.decode_batch.back();
  const Tensor logits = random_tensor(ops, DType::F32, {max_rows, V}, 14);
  const Tensor ids = ops.alloc(DType::I32, {max_rows});
  std::vector<int32_t> host(static_cast<size_t>(max_rows));
  for (int64_t rows : b.sizes.decode_batch) {
    const Tensor l = leading(logits, rows * V, V);
    Tensor i = leading(ids, rows);
    table.add({V}, rows, time_ops_call(ops, [&] {
      ops.argmax_rows(l, i);
      ops.to_host(i, host.data());
    }, b.timing));
  }
}

// Ops::copy of the hidden rows of each token count (the sizes an emulated rank's stand-in
// collectives copy: cache-resident on a CPU), then doubling up to one large buffer (the
// streaming rate). The doubling sizes hold the largest stand-ins (a vocabulary allgather: rows x
// vocabulary floats, 39 MB at Qwen1.5's batch 64): read between the largest token count's size
// and the large buffer alone, the log-log chord across the cache and HBM priced them above HBM's
// rate (perf/results/explain_fourteenth).
void hbm_copy(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const DType act = ops.activation_dtype();
  const int64_t es = static_cast<int64_t>(dtype_size(act)), elements = b.sizes.copy_bytes / es;
  const Tensor src = random_tensor(ops, act, {elements}, 11);
  Tensor dst = ops.alloc(act, {elements});
  const auto time_copy = [&](int64_t n) {
    const Tensor from = leading(src, n);
    Tensor to = leading(dst, n);
    table.add({1}, 2 * n * es, time_ops_call_as_step(ops, [&] { ops.copy(from, to); }, b.timing));
  };
  int64_t largest = 0;
  for (int64_t m : b.sizes.tokens) {
    const int64_t n = m * b.config->hidden_size;
    if (n >= elements) break;
    time_copy(n);
    largest = n;
  }
  for (int64_t n = 2 * largest; largest > 0 && n < elements; n *= 2) time_copy(n);
  table.add({1}, 2 * elements * es, time_ops_call(ops, [&] { ops.copy(src, dst); }, b.timing));
}

}  // namespace

// The host's cost of one call of each launch family (bench/launch_family.hpp): calls timed
// from the first enqueued to the last, not waiting for the device (TimedWork::host_only), at
// shapes a decode step has (64 tokens; the model's first GEMM and expert shapes), where calls
// run asynchronously. At most 32 calls a batch, so that a launch queue never fills and blocks
// the host on the device.
void launch_cost_benchmarks(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const DType act = ops.activation_dtype();
  const int64_t tokens = 64, hidden = b.config->hidden_size;
  TimingSettings settings = b.timing;
  settings.max_batch = std::min(settings.max_batch, 32);
  const auto host_time = [&](const std::function<void()>& call) { return bench_detail::time_ops_enqueue(ops, call, settings); };
  const auto add = [&](LaunchFamily family, const Measurement& m) {
    table.add({static_cast<int64_t>(family)}, 1, m);
  };
  const Tensor x = random_tensor(ops, act, {tokens, hidden}, 31), norm_w = random_tensor(ops, act, {hidden}, 32);
  Tensor y = ops.alloc(act, {tokens, hidden});
  add(LaunchFamily::kMemory, host_time([&] { ops.rmsnorm(x, norm_w, 1e-6f, y); }));
  const auto [n, k] = b.shapes.gemms.front();
  const Tensor w = random_tensor(ops, act, {n, k}, 33), xk = random_tensor(ops, act, {tokens, k}, 34);
  Tensor out = ops.alloc(act, {tokens, n});
  add(LaunchFamily::kGemm, host_time([&] { ops.linear(xk, w, nullptr, out); }));
  if (!b.shapes.experts.empty()) {
    const auto [e_hidden, cols] = b.shapes.experts.front();
    const int64_t local = b.sizes.experts.back(), slots = std::min<int64_t>(std::max<int64_t>(b.config->top_k, 1), local);
    const ExpertOperands o = expert_operands(ops, local, e_hidden, cols, tokens);
    add(LaunchFamily::kExperts, host_time(expert_call(ops, o, tokens, slots, local)));
  }
  if (!b.shapes.attention.empty()) add(LaunchFamily::kAttention, bench_detail::attention_launch_cost(ops, b, host_time));
  add(LaunchFamily::kCopy, host_time([&] { ops.copy(x, y); }));
}

namespace {

// `time` applied to the smallest kernel: timed eagerly (launched back to back) it is the host's
// launch rate, timed per node of a replayed recording a graph node's gap.
template <class Time>
auto time_smallest_kernel(Ops& ops, const Time& time) {
  Tensor acc = random_tensor(ops, ops.activation_dtype(), {1, 1}, 12);
  const Tensor one = random_tensor(ops, ops.activation_dtype(), {1, 1}, 13);
  return time([&] { ops.add_inplace(acc, one); });
}

Measurement eager_gap(Ops& ops, const ComputeBench& b) {
  return time_smallest_kernel(ops, [&](const std::function<void()>& call) { return time_ops_call(ops, call, b.timing); });
}

// The eager figure is measured again after every other family (remeasure_eager_gap) and the
// faster kept: in one H200 call of the fifteenth session a Qwen1.5 profile's first measurement
// read 13.3 us where the two other shapes' read 6.4-7.0 us (the host was busy during that bench:
// its host-bound expert points were 2.2x too), and every eager step the predictor priced from it
// came out up to 2x too slow.
void kernel_gaps(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  table.add({0}, 1, eager_gap(ops, b));
  const auto per_node = time_smallest_kernel(
      ops, [&](const std::function<void()>& call) { return time_ops_recorded(ops, call, b.timing); });
  if (per_node) table.add({1}, 1, *per_node);  // none where the backend does not record
}

void remeasure_eager_gap(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  table.keep_faster({0}, 1, eager_gap(ops, b));
  ops.reset_temps();
}

}  // namespace

void run_compute_benchmarks(Ops& ops, const ComputeBench& b, HardwareProfile& profile) {
  MOETRON_CHECK(b.config != nullptr && !b.sizes.tokens.empty(), "run_compute_benchmarks: no model or sizes");
  using Family = std::function<void(Ops&, const ComputeBench&, SeriesTable&)>;
  std::vector<std::pair<const TableSpec*, Family>> families = {
      {&tables::kKernelGap, kernel_gaps}, {&tables::kHbmCopy, hbm_copy},     {&tables::kMemoryBound, memory_kernels},
      {&tables::kGemm, gemms},            {&tables::kMoeExperts, expert_gemms},
      {&tables::kMoeExpertsGemv, expert_gemvs},
      {&tables::kAttentionDecode, bench_detail::decode_attention},
      {&tables::kAttentionPrefill, bench_detail::prefill_attention},
      {&tables::kAttentionInputs, bench_detail::attention_inputs},
      {&tables::kSampling, sampling}};
  if (b.host_step) families.push_back({&tables::kHostStep, b.host_step});  // the engine's own functions
  // Launch costs where calls are asynchronous (on the CPU a call is its work, already measured).
  if (ops.can_record()) families.push_back({&tables::kLaunchCost, launch_cost_benchmarks});
  for (const auto& [spec, run] : families) {
    const auto start = std::chrono::steady_clock::now();
    SeriesTable& table = profile.table(*spec);
    run(ops, b, table);
    ops.reset_temps();
    if (b.progress) {
      std::ostringstream line;
      line << spec->name << ": " << table.series.size() << " series in "
           << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s";
      b.progress(line.str());
    }
  }
  remeasure_eager_gap(ops, b, profile.table(tables::kKernelGap));
}

}  // namespace moetron
