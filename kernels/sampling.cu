// Greedy sampling: the argmax of each row of logits.
#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

constexpr int kThreads = 256;

// One block per row; NaN never wins (every comparison with it is false).
template <typename T>
__global__ void argmax_rows_kernel(const T* __restrict__ logits, int64_t cols, int32_t* ids) {
  const T* row = logits + blockIdx.x * cols;
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    argmax_merge(best, best_i, as_float(row[c]), static_cast<int>(c));
  warp_argmax(best, best_i);
  __shared__ float vals[32];
  __shared__ int idxs[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    vals[warp] = best;
    idxs[warp] = best_i;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < static_cast<int>(blockDim.x >> 5) ? vals[lane] : -INFINITY;
    best_i = lane < static_cast<int>(blockDim.x >> 5) ? idxs[lane] : 0x7fffffff;
    warp_argmax(best, best_i);
    // A row of -inf or NaN only still names a valid token.
    if (lane == 0) ids[blockIdx.x] = best_i == 0x7fffffff ? 0 : best_i;
  }
}

}  // namespace

void argmax_rows(const void* logits, bool logits_bf16, int64_t rows, int64_t cols, int32_t* ids,
                 cudaStream_t stream) {
  if (rows == 0) return;
  if (logits_bf16)
    argmax_rows_kernel<bf16><<<rows, kThreads, 0, stream>>>(static_cast<const bf16*>(logits),
                                                            cols, ids);
  else
    argmax_rows_kernel<float><<<rows, kThreads, 0, stream>>>(static_cast<const float*>(logits),
                                                             cols, ids);
  CUDA_CHECK_LAUNCH();
}

}  // namespace kernels
}  // namespace moetron
