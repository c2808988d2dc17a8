#include "bench_tensors.hpp"

#include <algorithm>

#include "moetron/core/error.hpp"

namespace moetron::bench_detail {

Tensor leading(const Tensor& t, int64_t count, int64_t cols) {
  MOETRON_CHECK(count <= t.numel() && (cols == 0 || count % cols == 0),
                "bench: a view of " << count << " elements of " << t.describe());
  Tensor flat = t.reshape({t.numel()}).slice_rows(0, count);
  return cols == 0 ? flat : flat.reshape({count / cols, cols});
}

Tensor random_tensor(Ops& ops, DType dtype, std::vector<int64_t> shape, uint64_t seed) {
  MOETRON_CHECK(dtype == DType::F32 || dtype == DType::BF16, "bench: random values of " << dtype_name(dtype));
  Tensor t = ops.alloc(dtype, std::move(shape));
  const int64_t n = t.numel(), block = std::min<int64_t>(n, 1 << 20);
  std::vector<float> values(static_cast<size_t>(block));
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& v : values) {  // xorshift64: cheap, and enough for timing
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    v = static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f;
  }
  Tensor first = leading(t, block);
  if (dtype == DType::F32) {
    ops.copy_from_host(first, values.data());
  } else {
    std::vector<uint16_t> bf16(values.size());
    std::transform(values.begin(), values.end(), bf16.begin(), float_to_bf16);
    ops.copy_from_host(first, bf16.data());
  }
  Tensor flat = t.reshape({n});
  for (int64_t at = block; at < n; at += block) {
    const int64_t count = std::min(block, n - at);
    Tensor dst = flat.slice_rows(at, count);
    ops.copy(leading(first, count), dst);
  }
  return t;
}

Tensor int32_tensor(Ops& ops, const std::vector<int32_t>& values, std::vector<int64_t> shape) {
  Tensor t = ops.alloc(DType::I32, std::move(shape));
  MOETRON_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "bench: " << values.size() << " values for " << t.describe());
  ops.copy_from_host(t, values.data());
  return t;
}

Tensor float32_tensor(Ops& ops, const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor t = ops.alloc(DType::F32, std::move(shape));
  MOETRON_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "bench: " << values.size() << " values for " << t.describe());
  ops.copy_from_host(t, values.data());
  return t;
}

Measurement time_ops_call(Ops& ops, const std::function<void()>& call, const TimingSettings& settings) {
  TimedWork work;
  work.call = [&] {
    const size_t mark = ops.temp_mark();
    call();
    ops.temp_release(mark);
  };
  work.wait = [&] { ops.sync(); };
  return measure(work, settings);
}

}  // namespace moetron::bench_detail
