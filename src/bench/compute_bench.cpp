#include "moetron/bench/compute_bench.hpp"

#include <algorithm>
#include <chrono>
#include <sstream>

#include "attention_bench.hpp"
#include "bench_tensors.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

namespace {

using bench_detail::float32_tensor;
using bench_detail::int32_tensor;
using bench_detail::leading;
using bench_detail::random_tensor;
using bench_detail::time_ops_call;

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
      table.add({n, k}, m, time_ops_call(ops, [&] { ops.linear(xm, w, nullptr, om); }, b.timing));
    }
  }
}

// Tokens t -> expert t mod experts, one slot each, weight 1: `experts` experts get
// `per_expert` rows each.
void expert_gemms(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const DType act = ops.activation_dtype();
  const int64_t local = b.sizes.experts.back(), max_rows = b.sizes.max_expert_rows;
  for (const auto& [hidden, cols] : b.shapes.experts) {
    ExpertWeights w;
    w.num_local = local;
    w.gate_up = random_tensor(ops, act, {local, 2 * cols, hidden}, 3);
    w.down = random_tensor(ops, act, {local, hidden, cols}, 4);
    const Tensor x = random_tensor(ops, act, {max_rows, hidden}, 5);
    const Tensor out = ops.alloc(act, {max_rows, hidden});
    for (int64_t experts : b.sizes.experts) {
      for (int64_t per_expert : b.sizes.tokens_per_expert) {
        const int64_t rows = per_expert * experts;
        if (rows > max_rows) break;
        std::vector<int32_t> ids(static_cast<size_t>(rows));
        for (int64_t t = 0; t < rows; ++t) ids[static_cast<size_t>(t)] = static_cast<int32_t>(t % experts);
        const Tensor id_t = int32_tensor(ops, ids, {rows, 1});
        const Tensor weight_t = float32_tensor(ops, std::vector<float>(ids.size(), 1.0f), {rows, 1});
        const Tensor xr = leading(x, rows * hidden, hidden);
        Tensor o = leading(out, rows * hidden, hidden);
        table.add({hidden, cols, experts}, per_expert,
                  time_ops_call(ops, [&] { ops.moe_experts(xr, id_t, weight_t, w, o); }, b.timing));
      }
    }
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
    table.add({0}, 3 * m * H * es, time_ops_call(ops, [&] { ops.add_inplace(am, dm); }, b.timing));
    table.add({1}, 2 * m * H * es, time_ops_call(ops, [&] { ops.rmsnorm(am, w, 1e-6f, nm); }, b.timing));
    table.add({2}, 2 * m * (qw + kw) * es,
              time_ops_call(ops, [&] { ops.rope(qm, km, pm, c.head_dim, c.rope_theta); }, b.timing));
  }
}

void hbm_copy(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const DType act = ops.activation_dtype();
  const int64_t elements = b.sizes.copy_bytes / static_cast<int64_t>(dtype_size(act));
  const Tensor src = random_tensor(ops, act, {elements}, 11);
  Tensor dst = ops.alloc(act, {elements});
  table.add({1}, 2 * b.sizes.copy_bytes, time_ops_call(ops, [&] { ops.copy(src, dst); }, b.timing));
}

// The per-call time of the smallest kernel, eagerly, and per node of a replayed recording.
void kernel_gaps(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  Tensor acc = random_tensor(ops, ops.activation_dtype(), {1, 1}, 12);
  const Tensor one = random_tensor(ops, ops.activation_dtype(), {1, 1}, 13);
  table.add({0}, 1, time_ops_call(ops, [&] { ops.add_inplace(acc, one); }, b.timing));
  if (!ops.can_record()) return;
  constexpr int kNodes = 100;
  ops.begin_recording();
  for (int i = 0; i < kNodes; ++i) ops.add_inplace(acc, one);
  const int recording = ops.end_recording();
  TimingSettings per_replay = b.timing;
  per_replay.max_batch = std::max(1, b.timing.max_batch / 10);
  Measurement m = time_ops_call(ops, [&] { ops.replay(recording); }, per_replay);
  for (double* t : {&m.median_s, &m.p10_s, &m.p90_s}) *t /= kNodes;
  table.add({1}, 1, m);
}

}  // namespace

void run_compute_benchmarks(Ops& ops, const ComputeBench& b, HardwareProfile& profile) {
  MOETRON_CHECK(b.config != nullptr && !b.sizes.tokens.empty(), "run_compute_benchmarks: no model or sizes");
  using Family = void (*)(Ops&, const ComputeBench&, SeriesTable&);
  const std::pair<const TableSpec*, Family> families[] = {
      {&tables::kKernelGap, kernel_gaps}, {&tables::kHbmCopy, hbm_copy},     {&tables::kMemoryBound, memory_kernels},
      {&tables::kGemm, gemms},            {&tables::kMoeExperts, expert_gemms},
      {&tables::kAttentionDecode, bench_detail::decode_attention},
      {&tables::kAttentionPrefill, bench_detail::prefill_attention}};
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
}

}  // namespace moetron
