// A half-open range [begin, end) of indices (layers, heads, columns, experts, vocabulary rows).
#pragma once
#include <cstdint>

namespace moetron {

struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool contains(int64_t i) const { return i >= begin && i < end; }
  bool operator==(const Range& o) const { return begin == o.begin && end == o.end; }
};

}  // namespace moetron
