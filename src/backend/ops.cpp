// The part of Ops shared by every backend.
#include "moetron/backend/ops.hpp"

#include <algorithm>

#include "moetron/core/error.hpp"

namespace moetron {

namespace {
Tensor upload_i32(Ops& ops, const std::vector<int32_t>& values) {
  Tensor t = ops.temp(DType::I32, {static_cast<int64_t>(values.size())});
  ops.copy_from_host(t, values.data());
  return t;
}
}  // namespace

BatchTensors Ops::upload_batch(const BatchLayout& b) {
  const size_t tokens = static_cast<size_t>(b.num_tokens), seqs = static_cast<size_t>(b.num_seqs);
  MOETRON_ASSERT(b.token_ids.size() == tokens && b.positions.size() == tokens &&
                 b.slot_mapping.size() == tokens);
  MOETRON_ASSERT(b.query_start.size() == seqs + 1 && b.kv_lens.size() == seqs);
  MOETRON_ASSERT(b.block_tables.size() == seqs * static_cast<size_t>(b.max_blocks_per_seq));
  BatchTensors t;
  t.num_tokens = b.num_tokens;
  t.num_seqs = b.num_seqs;
  t.max_blocks_per_seq = b.max_blocks_per_seq;
  t.block_size = b.block_size;
  t.dispatch_tokens = b.dispatch_tokens;
  t.max_kv_len = b.kv_lens.empty() ? 0 : *std::max_element(b.kv_lens.begin(), b.kv_lens.end());
  t.token_ids = upload_i32(*this, b.token_ids);
  t.positions = upload_i32(*this, b.positions);
  t.slot_mapping = upload_i32(*this, b.slot_mapping);
  t.query_start = upload_i32(*this, b.query_start);
  t.kv_lens = upload_i32(*this, b.kv_lens);
  t.block_tables = upload_i32(*this, b.block_tables);
  t.logit_rows = upload_i32(*this, b.logit_rows);
  return t;
}

}  // namespace moetron
