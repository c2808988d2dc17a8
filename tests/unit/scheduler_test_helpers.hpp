// Requests for the scheduler's tests: distinct prompt tokens per request, no sampling state.
#pragma once
#include <cstdint>

#include "moetron/engine/scheduler.hpp"

namespace moetron {

inline Sequence make_seq(int64_t index, int64_t prompt_len, int64_t max_new) {
  Sequence s;
  s.index = index;
  for (int64_t i = 0; i < prompt_len; ++i) s.prompt.push_back(static_cast<int32_t>(10 + index * 7 + i));
  s.max_new_tokens = max_new;
  return s;
}

}  // namespace moetron
