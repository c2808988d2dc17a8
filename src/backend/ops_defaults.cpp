// Default implementations of Ops members that every backend may share.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "moetron/backend/expert_dispatch.hpp"
#include "moetron/backend/ops.hpp"
#include "moetron/core/error.hpp"
#include "moetron/sampling/sampling.hpp"

namespace moetron {

// Argument checks are the contract's (ops_contract.cpp); these are the do_ defaults.

Tensor Ops::generate_weight(const std::vector<GeneratedRows>& parts, DType source_dtype,
                            std::vector<int64_t> shape) {
  Tensor host = staging_tensor(source_dtype, std::move(shape));
  char* at = static_cast<char*>(host.data);
  for (const GeneratedRows& p : parts) {
    const size_t bytes = static_cast<size_t>(p.rows * p.cols) * dtype_size(source_dtype);
    MOETRON_ASSERT(at + bytes <= static_cast<char*>(host.data) + host.nbytes());
    if (p.zeros)
      std::memset(at, 0, bytes);
    else
      fill_random_rows(p.fill, source_dtype, p.first, p.row_stride, p.rows, p.cols, at);
    at += bytes;
  }
  MOETRON_ASSERT(at == static_cast<char*>(host.data) + host.nbytes());
  return upload_weight(host);
}

void Ops::do_moe_experts_counted(const Tensor& x, const Tensor& ids, const Tensor& weights,
                                 const ExpertWeights& experts, Tensor& out, int64_t expected_slots,
                                 Tensor& served) {
  do_accumulate_expert_counts(ids, served);
  do_moe_experts(x, ids, weights, experts, out, expected_slots);
}

void Ops::do_accumulate_expert_counts(const Tensor& ids, Tensor& counts) {
  if (ids.numel() == 0) return;
  std::vector<int32_t> host_ids(static_cast<size_t>(ids.numel()));
  std::vector<int64_t> host_counts(static_cast<size_t>(counts.numel()));
  to_host(ids, host_ids.data());
  to_host(counts, host_counts.data());
  // As the CUDA kernel: ids outside [0, E) (a dispatch's padding, -1) are not counted.
  for (int32_t e : host_ids)
    if (e >= 0 && e < static_cast<int32_t>(host_counts.size())) ++host_counts[static_cast<size_t>(e)];
  copy_from_host(counts, host_counts.data());
}

void Ops::do_accumulate_routing(const Tensor& records, int64_t tokens, Tensor& counts,
                                Tensor& pairs) {
  const int64_t layers = records.dim(0), rows = records.dim(1), k = records.dim(2);
  const int64_t experts = counts.dim(1);
  // Only the step's tokens of each layer's record: a decode step reads `tokens` rows of `rows`.
  std::vector<int32_t> ids(static_cast<size_t>(layers * tokens * k));
  for (int64_t l = 0; l < layers && tokens > 0; ++l)
    to_host(records.slice_rows(l, 1).reshape({rows, k}).slice_rows(0, tokens),
            &ids[static_cast<size_t>(l * tokens * k)]);
  std::vector<int64_t> host_counts(static_cast<size_t>(counts.numel()));
  std::vector<int64_t> host_pairs(static_cast<size_t>(pairs.numel()));
  to_host(counts, host_counts.data());
  to_host(pairs, host_pairs.data());
  const auto valid = [experts](int64_t e) { return e >= 0 && e < experts; };
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t t = 0; t < tokens; ++t) {
      const int32_t* row = &ids[static_cast<size_t>((l * tokens + t) * k)];
      for (int64_t j = 0; j < k; ++j) {
        if (!valid(row[j])) continue;
        ++host_counts[static_cast<size_t>(l * experts + row[j])];
        for (int64_t m = 0; m < k; ++m)
          if (valid(row[m])) ++host_pairs[static_cast<size_t>((l * experts + row[j]) * experts + row[m])];
      }
    }
  copy_from_host(counts, host_counts.data());
  copy_from_host(pairs, host_pairs.data());
}

// The single operators in sequence: the reference for a fused backend, and its fallback.
void Ops::do_attention_inputs(const Tensor& qkv, const QkNormSpec& norm, const Tensor& positions,
                              int64_t head_dim, double theta, KvCache& cache,
                              const BatchTensors& batch, Tensor& q) {
  const int64_t T = qkv.rows(), q_cols = q.cols(), kv_cols = cache.k.dim(2) * cache.k.dim(3);
  const DType act = activation_dtype();
  Tensor k = temp(act, {T, kv_cols}), v = temp(act, {T, kv_cols});
  take_columns(qkv, 0, q_cols, q);
  take_columns(qkv, q_cols, kv_cols, k);
  take_columns(qkv, q_cols + kv_cols, kv_cols, v);
  if (norm.kind != HeadNorm::None) {
    const auto normed = [&](Tensor& x, const Tensor& w) {
      const int64_t width = norm.kind == HeadNorm::PerHead ? head_dim : x.cols();
      Tensor rows = x.reshape({x.numel() / width, width});
      Tensor out = temp(act, rows.shape);
      rmsnorm(rows, w, norm.eps, out);
      copy(out, rows);
    };
    normed(q, norm.q_weight);
    normed(k, norm.k_weight);
  }
  rope(q, k, positions, head_dim, theta);
  kv_append(k, v, cache, batch);
}

double Ops::timed_section_seconds() { return std::numeric_limits<double>::quiet_NaN(); }

void Ops::do_argmax_rows(const Tensor& logits, Tensor& ids) {
  if (logits.numel() == 0) return;
  const int64_t rows = logits.rows(), cols = logits.cols();
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  std::vector<int32_t> best(static_cast<size_t>(rows));
  to_host(logits, host.data());
  for (int64_t r = 0; r < rows; ++r)
    best[static_cast<size_t>(r)] = argmax_token(&host[static_cast<size_t>(r * cols)], cols);
  copy_from_host(ids, best.data());
}

void Ops::do_pack_dispatch(const Tensor& ids, const Tensor& weights, int64_t first, int64_t last,
                              int64_t expert_set_size, int64_t expert_shards, int64_t capacity,
                              Tensor& rows, Tensor& experts, Tensor& scales) {
  const int64_t entries = rows.numel(), k = ids.numel() > 0 ? ids.cols() : 1;
  std::vector<int32_t> host_ids(static_cast<size_t>(ids.numel()));
  std::vector<float> host_w(static_cast<size_t>(weights.numel()));
  if (ids.numel() > 0) {
    to_host(ids, host_ids.data());
    to_host(weights, host_w.data());
  }
  std::vector<int32_t> out_rows(static_cast<size_t>(entries), -1), out_experts(static_cast<size_t>(entries), -1);
  std::vector<float> out_scales(static_cast<size_t>(entries), 0.0f);
  const int64_t destinations = capacity == 0 ? 0 : entries / capacity;
  const std::vector<DispatchEntries> to = entries_by_destination(
      host_ids.data(), host_w.data(), k, first, last, expert_set_size, expert_shards, destinations);
  for (int64_t d = 0; d < destinations; ++d) {
    const DispatchEntries& mine = to[static_cast<size_t>(d)];
    MOETRON_CHECK(static_cast<int64_t>(mine.rows.size()) <= capacity,
                  "pack_dispatch: " << mine.rows.size() << " slots for destination " << d
                                    << ", more than its capacity " << capacity);
    const auto at = static_cast<std::ptrdiff_t>(d * capacity);
    std::copy(mine.rows.begin(), mine.rows.end(), out_rows.begin() + at);
    std::copy(mine.experts.begin(), mine.experts.end(), out_experts.begin() + at);
    std::copy(mine.scales.begin(), mine.scales.end(), out_scales.begin() + at);
  }
  if (entries == 0) return;
  copy_from_host(rows, out_rows.data());
  copy_from_host(experts, out_experts.data());
  copy_from_host(scales, out_scales.data());
}

void Ops::do_route_to_replicas(const Tensor& ids, const Tensor& table, Tensor& out) {
  if (ids.numel() == 0) return;
  std::vector<int32_t> host_ids(static_cast<size_t>(ids.numel())), host_table(static_cast<size_t>(table.numel()));
  std::vector<int32_t> host_out(host_ids.size());
  to_host(ids, host_ids.data());
  to_host(table, host_table.data());
  route_to_replicas_host(host_ids.data(), ids.rows(), ids.cols(), host_table.data(), table.rows(), table.cols(),
                         host_out.data());
  copy_from_host(out, host_out.data());
}

void Ops::do_pack_from_peers(const Tensor& ids, const Tensor& tables, const Tensor& senders, int64_t tp_size,
                             int64_t expert_set_size, int64_t expert_shards, int64_t destination, int64_t capacity,
                             Tensor& rows, Tensor& experts) {
  const int64_t peers = senders.rows(), tokens = ids.rows(), k = ids.numel() > 0 ? ids.cols() : 1;
  const int64_t table_size = tables.dim(1) * tables.dim(2);
  if (peers * capacity == 0) return;
  std::vector<int32_t> host_ids(static_cast<size_t>(ids.numel())), host_tables(static_cast<size_t>(tables.numel()));
  std::vector<int32_t> host_senders(static_cast<size_t>(senders.numel()));
  if (ids.numel() > 0) to_host(ids, host_ids.data());
  to_host(tables, host_tables.data());
  to_host(senders, host_senders.data());
  std::vector<int32_t> out_rows(static_cast<size_t>(peers * capacity), -1), out_experts(out_rows);
  std::vector<int32_t> slots(host_ids.size());
  const std::vector<float> no_weights(host_ids.size(), 0.0f);  // scales are not asked for
  for (int64_t p = 0; p < peers; ++p) {
    const int32_t table = host_senders[static_cast<size_t>(2 * p)], tp_rank = host_senders[static_cast<size_t>(2 * p + 1)];
    MOETRON_CHECK(table >= 0 && table < tables.dim(0) && tp_rank >= 0 && tp_rank < tp_size,
                  "pack_from_peers: peer " << p << " sends with table " << table << " of " << tables.dim(0)
                                           << " as tp rank " << tp_rank << " of " << tp_size);
    route_to_replicas_host(host_ids.data(), tokens, k, &host_tables[static_cast<size_t>(table * table_size)],
                           tables.dim(1), tables.dim(2), slots.data());
    // Enough destinations for every slot id routed, as pack_dispatch's caller has.
    const int32_t top = slots.empty() ? 0 : *std::max_element(slots.begin(), slots.end());
    const int64_t destinations = std::max(destination + 1, (top / expert_set_size + 1) * expert_shards);
    const std::vector<DispatchEntries> to =
        entries_by_destination(slots.data(), no_weights.data(), k, tokens * tp_rank / tp_size,
                               tokens * (tp_rank + 1) / tp_size, expert_set_size, expert_shards, destinations);
    const DispatchEntries& mine = to[static_cast<size_t>(destination)];
    MOETRON_CHECK(static_cast<int64_t>(mine.rows.size()) <= capacity,
                  "pack_from_peers: peer " << p << " sends " << mine.rows.size() << " slots, more than the capacity "
                                           << capacity);
    const auto at = static_cast<std::ptrdiff_t>(p * capacity);
    std::copy(mine.rows.begin(), mine.rows.end(), out_rows.begin() + at);
    std::copy(mine.experts.begin(), mine.experts.end(), out_experts.begin() + at);
  }
  copy_from_host(rows, out_rows.data());
  copy_from_host(experts, out_experts.data());
}

void Ops::do_sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                            const std::vector<uint64_t>& steps, Tensor& ids) {
  const int64_t rows = logits.rows(), cols = logits.cols();
  if (logits.numel() == 0) return;
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  std::vector<int32_t> tokens(static_cast<size_t>(rows));
  to_host(logits, host.data());
  for (size_t r = 0; r < tokens.size(); ++r)
    tokens[r] = sample_token(&host[r * static_cast<size_t>(cols)], cols, params[r], steps[r]);
  copy_from_host(ids, tokens.data());
}

}  // namespace moetron
