// Row gathers (embedding lookup, gather_rows) and the weighted scatter-add of rows.
#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

// One block per output row; VEC = 8 moves 16 bytes per thread and access.
template <int VEC>
__global__ void gather_rows_kernel(const bf16* __restrict__ table, int64_t table_rows,
                                   int64_t cols, const int32_t* __restrict__ rows,
                                   bf16* __restrict__ out) {
  pdl_enter();  // first: see common.cuh
  const int64_t i = blockIdx.x;
  const int64_t src = rows[i];
  bf16* dst = out + i * cols;
  const bool valid = src >= 0 && src < table_rows;
  for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
    float f[VEC];
    if (valid) {
      load_bf16<VEC>(table + src * cols + c, f);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) f[j] = 0.0f;
    }
    store_bf16<VEC>(dst + c, f);
  }
}

// One block per source row; pairs of columns go through the bf16x2 atomic add.
__global__ void scatter_add_rows_kernel(bf16* acc, int64_t acc_rows, int64_t cols,
                                        const bf16* __restrict__ x,
                                        const int32_t* __restrict__ rows,
                                        const float* __restrict__ scale) {
  pdl_enter();  // first: see common.cuh
  const int64_t i = blockIdx.x;
  const int64_t dst = rows[i];
  if (dst < 0 || dst >= acc_rows) return;
  const float s = scale[i];
  const bf16* src = x + i * cols;
  bf16* out = acc + dst * cols;
  if ((cols & 1) == 0) {
    for (int64_t c = 2 * threadIdx.x; c < cols; c += 2 * blockDim.x) {
      float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + c));
      atomicAdd(reinterpret_cast<__nv_bfloat162*>(out + c),
                __floats2bfloat162_rn(s * v.x, s * v.y));
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      atomicAdd(out + c, __float2bfloat16(s * __bfloat162float(src[c])));
  }
}

int row_threads(int64_t cols, int vec) {
  int64_t t = ceil_div(cols, vec);
  t = ceil_div(t, 32) * 32;
  return static_cast<int>(t < 32 ? 32 : (t > 256 ? 256 : t));
}

}  // namespace

void gather_rows(const bf16* table, int64_t table_rows, int64_t cols, const int32_t* rows,
                 int64_t n, bf16* out, cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  if (cols % 8 == 0 && aligned16(table) && aligned16(out)) {
    launch(gather_rows_kernel<8>, n, row_threads(cols, 8), 0, stream, table, table_rows, cols, rows,
        out);
  } else {
    launch(gather_rows_kernel<1>, n, row_threads(cols, 1), 0, stream, table, table_rows, cols, rows,
        out);
  }
}

void scatter_add_rows(bf16* acc, int64_t acc_rows, int64_t cols, const bf16* x,
                      const int32_t* rows, const float* scale, int64_t n, cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  launch(scatter_add_rows_kernel, n, row_threads(cols, 2), 0, stream, acc, acc_rows, cols, x, rows,
      scale);
}

}  // namespace kernels
}  // namespace moetron
