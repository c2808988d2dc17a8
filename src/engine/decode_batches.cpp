#include "moetron/engine/decode_batches.hpp"

#include "moetron/core/error.hpp"

namespace moetron {

std::vector<int64_t> padded_decode_batches(int64_t max_batch) {
  MOETRON_CHECK(max_batch >= 1, "decode batches: the largest batch must be at least 1, got " << max_batch);
  std::vector<int64_t> sizes;
  for (int64_t size = 1; size < max_batch; size *= 2) sizes.push_back(size);
  sizes.push_back(max_batch);
  return sizes;
}

size_t decode_bucket(int64_t decodes) {
  if (decodes <= 0) return 0;
  size_t bucket = 1;
  for (uint64_t size = 1; size < static_cast<uint64_t>(decodes); size *= 2) ++bucket;
  return bucket;
}

}  // namespace moetron
