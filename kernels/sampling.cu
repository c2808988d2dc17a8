// Greedy sampling: the argmax of each row of logits, one block per row. Decode has few rows,
// so each block must stream its row fast on its own: 1024 threads, 16-byte loads, several in
// flight per thread.
#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

constexpr int kThreads = 1024;
constexpr int kUnroll = 4;            // 16-byte loads in flight per thread
constexpr int kInvalid = 0x7fffffff;  // index of "nothing seen yet"

template <typename T>
struct Vec16 {
  static constexpr int kElems = 16 / sizeof(T);
  T v[kElems];
};

// NaN never wins (every comparison with it is false).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    argmax_rows_kernel(const T* __restrict__ logits, int64_t cols, int32_t* ids) {
  constexpr int kVec = Vec16<T>::kElems;
  const T* row = logits + blockIdx.x * cols;
  float best = -INFINITY;
  int best_i = kInvalid;
  // Scalar head up to a 16-byte boundary, vector body, scalar tail.
  int64_t head = ((16 - (reinterpret_cast<uintptr_t>(row) & 15)) & 15) / sizeof(T);
  if (head > cols) head = cols;
  const int64_t body = (cols - head) / kVec;  // whole vectors
  for (int64_t c = threadIdx.x; c < head; c += kThreads)
    argmax_merge(best, best_i, as_float(row[c]), static_cast<int>(c));
  const Vec16<T>* vec = reinterpret_cast<const Vec16<T>*>(row + head);
  for (int64_t v0 = threadIdx.x; v0 < body; v0 += static_cast<int64_t>(kThreads) * kUnroll) {
    Vec16<T> chunk[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + static_cast<int64_t>(u) * kThreads;
      if (v < body) chunk[u] = vec[v];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + static_cast<int64_t>(u) * kThreads;
      if (v >= body) break;
#pragma unroll
      for (int i = 0; i < kVec; ++i)
        argmax_merge(best, best_i, as_float(chunk[u].v[i]),
                     static_cast<int>(head + v * kVec + i));
    }
  }
  for (int64_t c = head + body * kVec + threadIdx.x; c < cols; c += kThreads)
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
    best = vals[lane];  // kThreads / 32 == 32 warps
    best_i = idxs[lane];
    warp_argmax(best, best_i);
    // A row of -inf or NaN only still names a valid token.
    if (lane == 0) ids[blockIdx.x] = best_i == kInvalid ? 0 : best_i;
  }
}

}  // namespace

void argmax_rows(const void* logits, bool logits_bf16, int64_t rows, int64_t cols, int32_t* ids,
                 cudaStream_t stream) {
  if (rows == 0) return;
  static_assert(kThreads == 32 * 32, "the final merge reads one partial per lane");
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
