// The part of Ops shared by every backend.
#include "moetron/backend/ops.hpp"

#include <algorithm>

#include "moetron/core/error.hpp"

namespace moetron {

BatchArrays::BatchArrays(int64_t tokens, int64_t seqs, int64_t max_blocks_per_seq, int64_t logit_rows)
    : counts_{tokens, tokens, tokens, seqs + 1, seqs, seqs * max_blocks_per_seq, logit_rows, 1} {
  for (size_t i = 0; i < counts_.size(); ++i) {
    MOETRON_ASSERT(counts_[i] >= 0);
    offsets_[i + 1] = (offsets_[i] + counts_[i] + kAlign - 1) / kAlign * kAlign;
  }
}

void BatchArrays::bind(const Tensor& buffer, BatchTensors& t) const {
  MOETRON_ASSERT(buffer.dtype == DType::I32 && buffer.numel() >= total());
  const Tensor flat = buffer.reshape({buffer.numel()});
  Tensor* views[kArrays] = {&t.token_ids, &t.positions,    &t.slot_mapping, &t.query_start,
                            &t.kv_lens,   &t.block_tables, &t.logit_rows,   &t.valid_tokens};
  for (size_t i = 0; i < counts_.size(); ++i) *views[i] = flat.slice_rows(offsets_[i], counts_[i]);
}

std::array<int32_t*, BatchArrays::kArrays> BatchArrays::views(std::vector<int32_t>& packed) const {
  MOETRON_ASSERT(static_cast<int64_t>(packed.size()) == total());
  std::array<int32_t*, kArrays> at{};
  for (size_t i = 0; i < counts_.size(); ++i) at[i] = packed.data() + offsets_[i];
  return at;
}

std::vector<int32_t> BatchArrays::pack(const std::array<const int32_t*, kArrays>& arrays) const {
  std::vector<int32_t> packed(static_cast<size_t>(total()), 0);
  const std::array<int32_t*, kArrays> at = views(packed);
  for (size_t i = 0; i < counts_.size(); ++i) std::copy_n(arrays[i], counts_[i], at[i]);
  return packed;
}

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
  const BatchArrays arrays(b.num_tokens, b.num_seqs, b.max_blocks_per_seq,
                           static_cast<int64_t>(b.logit_rows.size()));
  Tensor buffer = temp(DType::I32, {arrays.total()});
  arrays.bind(buffer, t);
  const int32_t valid = static_cast<int32_t>(b.num_tokens);  // an eager step's tokens are all real
  const std::vector<int32_t> packed =
      arrays.pack({b.token_ids.data(), b.positions.data(), b.slot_mapping.data(), b.query_start.data(),
                   b.kv_lens.data(), b.block_tables.data(), b.logit_rows.data(), &valid});
  copy_from_host(buffer, packed.data());
  return t;
}

}  // namespace moetron
