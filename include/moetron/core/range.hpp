// A half-open range [begin, end) of indices (layers, heads, columns, experts, vocabulary rows).
#pragma once
#include <algorithm>
#include <cstdint>

namespace moetron {

struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool contains(int64_t i) const { return i >= begin && i < end; }
  bool operator==(const Range& o) const { return begin == o.begin && end == o.end; }
};

// The vocab-parallel LM head pads the vocabulary to tp * vocab_shard_rows(vocab, tp) rows, as
// production engines do, so that any vocabulary splits over any tp: every tp rank holds
// ceil(vocab / tp) rows (the all-gather of its logits needs equal slices), and rank `index`'s
// real tokens are vocab_shard(vocab, tp, index) = [index * rows, (index + 1) * rows) cut at vocab:
// fewer on the last ranks, possibly none. The rows past them are zero and their logits are
// never gathered into a row (ModelForward::logits_device).
inline int64_t vocab_shard_rows(int64_t vocab_size, int64_t tp) { return (vocab_size + tp - 1) / tp; }
inline Range vocab_shard(int64_t vocab_size, int64_t tp, int64_t index) {
  const int64_t rows = vocab_shard_rows(vocab_size, tp);
  return {std::min(index * rows, vocab_size), std::min((index + 1) * rows, vocab_size)};
}

}  // namespace moetron
