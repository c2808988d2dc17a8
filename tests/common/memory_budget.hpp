// The memory budget the plan tests give each rank: a cpu run of a few short requests.
#pragma once
#include <cstdint>

#include "moetron/parallel/memory_need.hpp"

namespace moetron {

// `bytes` per rank (0: unknown, nothing is checked); a 4096-token KV cache, 16-token steps.
inline MemoryBudget cpu_test_memory(int64_t bytes) {
  MemoryBudget m;
  m.bytes_per_rank = bytes;
  m.storage = backend_storage("cpu");
  m.run.kv_tokens = 4096;
  m.run.max_step_tokens = 16;
  m.run.max_batch = 4;
  return m;
}

}  // namespace moetron
