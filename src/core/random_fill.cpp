#include "moetron/core/random_fill.hpp"

#include <algorithm>
#include <thread>
#include <vector>

#include "moetron/core/error.hpp"

namespace moetron {

void fill_random(const RandomFill& fill, DType dtype, int64_t first, int64_t count, void* dst) {
  const uint64_t base = static_cast<uint64_t>(first);
  switch (dtype) {
    case DType::F32: {
      auto* out = static_cast<float*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = random_fill_value(fill, base + i);
      return;
    }
    case DType::BF16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = float_to_bf16(random_fill_value(fill, base + i));
      return;
    }
    case DType::F16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = float_to_f16(random_fill_value(fill, base + i));
      return;
    }
    default: MOETRON_FAIL("random weights cannot be " << dtype_name(dtype) << " (use bf16, f16 or f32)");
  }
}

void fill_random_rows(const RandomFill& fill, DType dtype, int64_t first, int64_t row_stride, int64_t rows,
                      int64_t cols, void* dst) {
  if (rows <= 0 || cols <= 0) return;
  const size_t row_bytes = static_cast<size_t>(cols) * dtype_size(dtype);
  const int64_t threads = std::clamp<int64_t>(rows * cols / (1 << 16), 1,
                                              std::min<int64_t>(rows, std::max(1u, std::thread::hardware_concurrency())));
  auto fill_rows = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      fill_random(fill, dtype, first + r * row_stride, cols, static_cast<char*>(dst) + static_cast<size_t>(r) * row_bytes);
  };
  if (threads == 1) return fill_rows(0, rows);
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t) pool.emplace_back(fill_rows, rows * t / threads, rows * (t + 1) / threads);
  for (std::thread& th : pool) th.join();
}

}  // namespace moetron
