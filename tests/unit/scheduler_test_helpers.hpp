// Requests for the scheduler's tests: distinct prompt tokens per request, no sampling state.
#pragma once
#include <cstdint>
#include <tuple>
#include <vector>

#include "moetron/engine/scheduler.hpp"

namespace moetron {

inline Sequence make_seq(int64_t index, int64_t prompt_len, int64_t max_new) {
  Sequence s;
  s.index = index;
  for (int64_t i = 0; i < prompt_len; ++i) s.prompt.push_back(static_cast<int32_t>(10 + index * 7 + i));
  s.max_new_tokens = max_new;
  return s;
}

// (sequence index, start, count, prefill, samples): a step as the tests spell it.
using Entry = std::tuple<int64_t, int64_t, int64_t, bool, bool>;
inline std::vector<Entry> entries(const std::vector<ScheduledSeq>& step) {
  std::vector<Entry> out;
  for (const ScheduledSeq& g : step) out.emplace_back(g.seq->index, g.start, g.count, g.prefill, g.samples);
  return out;
}

}  // namespace moetron
