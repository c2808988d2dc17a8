// Dummy weights made on the device (Ops::generate_weight): the generator of core/random_fill.hpp,
// element for element what the host writes into a checkpoint of the source dtype, then bf16
// (what upload_weight makes of it), with no host generation, staging or upload (about 11 s for
// the OLMoE-1B-7B shape on the H200's host, ninth session; this kernel's time is not yet measured).
#include <cuda_fp16.h>

#include "common.cuh"
#include "moetron/core/random_fill.hpp"

namespace moetron {
namespace kernels {
namespace {

constexpr int kThreads = 256;

// The value the host stores in `source` (core/random_fill.hpp: round to nearest even), in bf16.
__device__ __forceinline__ bf16 stored_as_bf16(float value, DType source) {
  if (source == DType::F16) value = __half2float(__float2half_rn(value));
  return __float2bfloat16_rn(value);  // exact for bf16 and f16 sources' values too
}

__global__ void fill_random_rows_kernel(RandomFill fill, DType source, int64_t first, int64_t row_stride,
                                        int64_t rows, int64_t cols, bf16* __restrict__ out) {
  pdl_enter();  // first: see common.cuh
  const int64_t n = rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t r = i / cols, c = i - r * cols;
    const uint64_t index = static_cast<uint64_t>(first + r * row_stride + c);
    out[i] = stored_as_bf16(random_fill_value(fill, index), source);
  }
}

}  // namespace

void fill_random_rows(const RandomFill& fill, DType source, int64_t first, int64_t row_stride, int64_t rows,
                      int64_t cols, bf16* out, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  launch(fill_random_rows_kernel, grid_for(n, kThreads), kThreads, 0, stream, fill, source, first, row_stride,
         rows, cols, out);
}

}  // namespace kernels
}  // namespace moetron
