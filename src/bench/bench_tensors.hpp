// What the benchmarks share: device tensors with data, and timing one Ops call repeatedly with
// its temporaries released after each call (so a thousand calls need one call's scratch).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/bench/timing.hpp"

namespace moetron::bench_detail {

// A tensor of `dtype` (F32 or BF16) with pseudo-random values in [-0.5, 0.5): GPUs draw less power
// (and clock higher) on zeros, so zeros would time too fast. A block of up to 2^20 values is
// uploaded once and copied on the device over the rest, so gigabytes fill in milliseconds.
Tensor random_tensor(Ops& ops, DType dtype, std::vector<int64_t> shape, uint64_t seed);
Tensor int32_tensor(Ops& ops, const std::vector<int32_t>& values, std::vector<int64_t> shape);
Tensor float32_tensor(Ops& ops, const std::vector<float>& values, std::vector<int64_t> shape);
// The first `count` elements of `t`, viewed as [count / cols, cols] (cols 0: one dimension).
Tensor leading(const Tensor& t, int64_t count, int64_t cols = 0);

// Times `call` on `ops`: each call's temporaries are released after it; waits are Ops::sync.
Measurement time_ops_call(Ops& ops, const std::function<void()>& call, const TimingSettings& settings);

}  // namespace moetron::bench_detail
