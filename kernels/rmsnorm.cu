// RMSNorm family: plain, fused with the residual add, and the tensor-parallel split into a row
// sum of squares and a norm that takes the (all-reduced) sum. One block per row, fp32 sums.
#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

// out[c] = x[c] * inv_rms * w[c] over one row.
template <int VEC>
__device__ void scale_row(const bf16* x, const bf16* __restrict__ w, int64_t cols,
                          float inv_rms, bf16* out) {
  for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
    float xv[VEC], wv[VEC];
    load_bf16<VEC>(x + c, xv);
    load_bf16<VEC>(w + c, wv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) xv[j] = xv[j] * inv_rms * wv[j];
    store_bf16<VEC>(out + c, xv);
  }
}

// Sum of squares of one row, summed over the block. With kAdd the row is x += delta first
// (rounded to bf16 and stored), and the sum is over the stored values.
template <int VEC, bool kAdd>
__device__ float row_sumsq_block(bf16* x, const bf16* __restrict__ delta, int64_t cols) {
  float sum = 0.0f;
  for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
    float xv[VEC];
    load_bf16<VEC>(x + c, xv);
    if constexpr (kAdd) {
      float dv[VEC];
      load_bf16<VEC>(delta + c, dv);
#pragma unroll
      for (int j = 0; j < VEC; ++j) xv[j] = __bfloat162float(__float2bfloat16(xv[j] + dv[j]));
      store_bf16<VEC>(x + c, xv);
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) sum += xv[j] * xv[j];
  }
  return block_sum(sum);
}

template <int VEC, bool kAdd>
__global__ void rmsnorm_kernel(bf16* x, const bf16* __restrict__ delta,
                               const bf16* __restrict__ w, int64_t cols, float eps, bf16* out) {
  pdl_enter();  // first: see common.cuh
  const int64_t r = blockIdx.x;
  bf16* row = x + r * cols;
  const float sumsq = row_sumsq_block<VEC, kAdd>(row, kAdd ? delta + r * cols : nullptr, cols);
  // With kAdd this block's own stores above are re-read below: block_sum's barriers order them.
  scale_row<VEC>(row, w, cols, rsqrtf(sumsq / static_cast<float>(cols) + eps), out + r * cols);
}

template <int VEC>
__global__ void row_sumsq_kernel(const bf16* x, int64_t cols, float* sumsq) {
  pdl_enter();  // first: see common.cuh
  const float s = row_sumsq_block<VEC, false>(const_cast<bf16*>(x) + blockIdx.x * cols, nullptr,
                                              cols);
  if (threadIdx.x == 0) sumsq[blockIdx.x] = s;
}

template <int VEC>
__global__ void rmsnorm_with_sumsq_kernel(const bf16* x, const float* __restrict__ sumsq,
                                          int64_t cols, float total_cols, const bf16* w,
                                          float eps, bf16* out) {
  pdl_enter();  // first: see common.cuh
  const int64_t r = blockIdx.x;
  scale_row<VEC>(x + r * cols, w, cols, rsqrtf(sumsq[r] / total_cols + eps), out + r * cols);
}

int norm_threads(int64_t cols, int vec) {
  int64_t t = ceil_div(ceil_div(cols, vec), 32) * 32;
  return static_cast<int>(t < 32 ? 32 : (t > 512 ? 512 : t));
}

bool vec8_ok(int64_t cols, const void* a, const void* b, const void* c) {
  return cols % 8 == 0 && aligned16(a) && aligned16(b) && aligned16(c);
}

}  // namespace

void rmsnorm(const bf16* x, const bf16* w, int64_t rows, int64_t cols, float eps, bf16* out,
             cudaStream_t stream) {
  if (rows == 0) return;
  bf16* xm = const_cast<bf16*>(x);  // not written without kAdd
  if (vec8_ok(cols, x, w, out))
    launch(rmsnorm_kernel<8, false>, rows, norm_threads(cols, 8), 0, stream, xm, nullptr, w, cols,
        eps, out);
  else
    launch(rmsnorm_kernel<1, false>, rows, norm_threads(cols, 1), 0, stream, xm, nullptr, w, cols,
        eps, out);
}

void add_rmsnorm(bf16* residual, const bf16* delta, const bf16* w, int64_t rows, int64_t cols,
                 float eps, bf16* out, cudaStream_t stream) {
  if (rows == 0) return;
  if (vec8_ok(cols, residual, delta, out) && aligned16(w))
    launch(rmsnorm_kernel<8, true>, rows, norm_threads(cols, 8), 0, stream, residual, delta, w,
        cols, eps, out);
  else
    launch(rmsnorm_kernel<1, true>, rows, norm_threads(cols, 1), 0, stream, residual, delta, w,
        cols, eps, out);
}

void row_sumsq(const bf16* x, int64_t rows, int64_t cols, float* sumsq, cudaStream_t stream) {
  if (rows == 0) return;
  if (vec8_ok(cols, x, x, x))
    launch(row_sumsq_kernel<8>, rows, norm_threads(cols, 8), 0, stream, x, cols, sumsq);
  else
    launch(row_sumsq_kernel<1>, rows, norm_threads(cols, 1), 0, stream, x, cols, sumsq);
}

void rmsnorm_with_sumsq(const bf16* x, const float* sumsq, int64_t rows, int64_t cols,
                        int64_t total_cols, const bf16* w, float eps, bf16* out,
                        cudaStream_t stream) {
  if (rows == 0) return;
  const float total = static_cast<float>(total_cols);
  if (vec8_ok(cols, x, w, out))
    launch(rmsnorm_with_sumsq_kernel<8>, rows, norm_threads(cols, 8), 0, stream, x, sumsq, cols,
        total, w, eps, out);
  else
    launch(rmsnorm_with_sumsq_kernel<1>, rows, norm_threads(cols, 1), 0, stream, x, sumsq, cols,
        total, w, eps, out);
}

}  // namespace kernels
}  // namespace moetron
