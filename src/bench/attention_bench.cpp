#include "attention_bench.hpp"

#include <algorithm>
#include <cmath>

#include "bench_tensors.hpp"

namespace moetron::bench_detail {

namespace {

constexpr int64_t kBlockSize = 16;  // the engine's default --block-size

int64_t blocks_for(int64_t tokens) { return (tokens + kBlockSize - 1) / kBlockSize; }

// `sequences` sequences of `context` cached tokens each, the last `queries` of which are this
// step's tokens; sequence s owns blocks [s * nb, (s + 1) * nb).
BatchLayout layout(int64_t sequences, int64_t context, int64_t queries) {
  BatchLayout b;
  const int64_t nb = blocks_for(context);
  b.num_seqs = sequences;
  b.num_tokens = sequences * queries;
  b.block_size = kBlockSize;
  b.max_blocks_per_seq = nb;
  for (int64_t s = 0; s < sequences; ++s) {
    b.query_start.push_back(static_cast<int32_t>(s * queries));
    b.kv_lens.push_back(static_cast<int32_t>(context));
    for (int64_t j = 0; j < nb; ++j) b.block_tables.push_back(static_cast<int32_t>(s * nb + j));
    for (int64_t pos = context - queries; pos < context; ++pos) {
      b.token_ids.push_back(0);
      b.positions.push_back(static_cast<int32_t>(pos));
      b.slot_mapping.push_back(static_cast<int32_t>((s * nb + pos / kBlockSize) * kBlockSize + pos % kBlockSize));
    }
    b.logit_rows.push_back(static_cast<int32_t>((s + 1) * queries - 1));
  }
  b.query_start.push_back(static_cast<int32_t>(b.num_tokens));
  return b;
}

// Each (sequences, context) pair the sweep wants, in the order the table needs (context outer,
// size ascending), and the cache and query rows the largest needs.
struct Sweep {
  struct Point {
    int64_t sequences, context;
  };
  std::vector<Point> points;
  int64_t max_blocks = 0, max_rows = 0;
};

void attention_sweep(Ops& ops, const ComputeBench& b, const Sweep& sweep, bool prefill, SeriesTable& table) {
  const DType act = ops.activation_dtype();
  for (const auto& heads : b.shapes.attention) {
    const int64_t qh = heads[0], kvh = heads[1], hd = heads[2];
    KvCache cache;
    cache.k = random_tensor(ops, act, {sweep.max_blocks, kBlockSize, kvh, hd}, 21);
    cache.v = random_tensor(ops, act, {sweep.max_blocks, kBlockSize, kvh, hd}, 22);
    const Tensor q = random_tensor(ops, act, {sweep.max_rows, qh * hd}, 23);
    const Tensor out = ops.alloc(act, {sweep.max_rows, qh * hd});
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (const Sweep::Point& p : sweep.points) {
      const size_t before_batch = ops.temp_mark();
      const int64_t queries = prefill ? p.context : 1, rows = p.sequences * queries;
      const BatchTensors batch = ops.upload_batch(layout(p.sequences, p.context, queries));
      const Tensor qr = leading(q, rows * qh * hd, qh * hd);
      Tensor o = leading(out, rows * qh * hd, qh * hd);
      table.add({qh, kvh, hd, p.context}, prefill ? rows : p.sequences,
                time_ops_call_as_step(ops, [&] { ops.attention(qr, cache, batch, qh, kvh, hd, scale, o); }, b.timing));
      ops.temp_release(before_batch);
    }
  }
}

}  // namespace

void attention_inputs(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const ModelConfig& c = *b.config;
  const DType act = ops.activation_dtype();
  const int64_t max_t = b.sizes.tokens.back();
  for (const auto& heads : b.shapes.attention) {
    const int64_t qh = heads[0], kvh = heads[1], hd = heads[2], q_cols = qh * hd, kv_cols = kvh * hd;
    const Tensor qkv = random_tensor(ops, act, {max_t, q_cols + 2 * kv_cols}, 24);
    const Tensor q = ops.alloc(act, {max_t, q_cols});
    KvCache cache;
    cache.k = ops.alloc(act, {blocks_for(max_t), kBlockSize, kvh, hd});
    cache.v = ops.alloc(act, {blocks_for(max_t), kBlockSize, kvh, hd});
    // As forward.cpp: a norm over whole projections spread over tp ranks is applied before the op.
    QkNormSpec norm;
    const bool whole = qh == c.num_heads;
    if (c.qk_norm == QkNorm::PerHead || (c.qk_norm == QkNorm::WholeProjection && whole)) {
      norm.kind = c.qk_norm == QkNorm::PerHead ? HeadNorm::PerHead : HeadNorm::WholeRow;
      norm.q_weight = random_tensor(ops, act, {norm.kind == HeadNorm::PerHead ? hd : q_cols}, 25);
      norm.k_weight = random_tensor(ops, act, {norm.kind == HeadNorm::PerHead ? hd : kv_cols}, 26);
      norm.eps = static_cast<float>(c.rms_norm_eps);
    }
    for (int64_t t : b.sizes.tokens) {
      const size_t before_batch = ops.temp_mark();
      const BatchTensors batch = ops.upload_batch(layout(1, t, t));
      const Tensor in = leading(qkv, t * (q_cols + 2 * kv_cols), q_cols + 2 * kv_cols);
      Tensor out = leading(q, t * q_cols, q_cols);
      table.add({qh, kvh, hd}, t, time_ops_call_as_step(ops, [&] {
        ops.attention_inputs(in, norm, batch.positions, hd, c.rope_theta, cache, batch, out);
      }, b.timing));
      ops.temp_release(before_batch);
    }
  }
}

Measurement attention_launch_cost(Ops& ops, const ComputeBench& b,
                                  const std::function<Measurement(const std::function<void()>&)>& time) {
  const DType act = ops.activation_dtype();
  const int64_t qh = b.shapes.attention.front()[0], kvh = b.shapes.attention.front()[1];
  const int64_t hd = b.shapes.attention.front()[2], sequences = 16, context = 128;
  KvCache cache;
  cache.k = random_tensor(ops, act, {sequences * blocks_for(context), kBlockSize, kvh, hd}, 27);
  cache.v = random_tensor(ops, act, {sequences * blocks_for(context), kBlockSize, kvh, hd}, 28);
  const Tensor q = random_tensor(ops, act, {sequences, qh * hd}, 29);
  Tensor out = ops.alloc(act, {sequences, qh * hd});
  const BatchTensors batch = ops.upload_batch(layout(sequences, context, 1));
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  return time([&] { ops.attention(q, cache, batch, qh, kvh, hd, scale, out); });
}

void decode_attention(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  Sweep sweep;
  for (int64_t context : b.sizes.contexts)
    for (int64_t batch : b.sizes.decode_batch) sweep.points.push_back({batch, context});
  sweep.max_blocks = b.sizes.decode_batch.back() * blocks_for(b.sizes.contexts.back());
  sweep.max_rows = b.sizes.decode_batch.back();
  attention_sweep(ops, b, sweep, false, table);
}

void prefill_attention(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  Sweep sweep;
  const int64_t max_rows = b.sizes.tokens.back();
  for (int64_t context : b.sizes.contexts)
    for (int64_t sequences : b.sizes.prefill_sequences)
      if (sequences * context <= max_rows || sequences == 1) {
        sweep.points.push_back({sequences, context});
        sweep.max_blocks = std::max(sweep.max_blocks, sequences * blocks_for(context));
        sweep.max_rows = std::max(sweep.max_rows, sequences * context);
      }
  attention_sweep(ops, b, sweep, true, table);
}

}  // namespace moetron::bench_detail
