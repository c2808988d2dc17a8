// Decode-sized dense projections on tensor cores: out [m, n] = x [m, k] . W^T (+ bias) for a
// handful of rows (m <= kDenseGemvMaxRows), where the weights are the whole cost.
//
// cuBLAS reads the attention projections of a batch-1 decode step at about 45% of HBM (ncu,
// perf/NOTES.md fourth session), and its kernels cannot overlap their predecessor (no PDL). A
// GEMV with one warp per output column was slower still (too few bytes in flight: 2,048
// columns are under 8 warps an SM). Here a block owns 16 weight rows and its 8 warps split K,
// each lane holding kUnroll 16-byte loads of two rows in flight and the next turn's
// behind them, so every SM streams; the MMA takes the weights as its 16-row operand and the
// tokens as its 8 columns (mma_chunk, mma.cuh), with no shared memory until the warps' sums meet.
//
// Where it departs from pdl_enter() (common.cuh), measured on an H200 (perf/NOTES.md, sixteenth
// session; decode step medians, graphs, against cuBLAS for the same linears):
// - The first turn's weights are loaded BEFORE the PDL wait: weights are never written by a
//   kernel of a step, so they stream while the previous kernel (whose output is x) finishes.
//   (Early launches can reach back past several short kernels, so the weights must be complete
//   before the first forward: the loader synchronises the stream once they are, in
//   finish_weight_uploads, also after generating dummy weights on the device.)
//   x, the bias and the output are touched only after the wait. Loading them after the wait
//   made OLMoE's batch-1 step 1.36-1.38 ms, against 1.26 ms before and 1.30 ms on cuBLAS.
// - Dependents are let in (pdl_trigger) only once the block's loads are done, not first thing.
//   With every linear of a step on this kernel a step was one unbroken chain of early launches
//   (cuBLAS kernels break it), and Mixtral's batch-8 graph step took 2.5 ms against 1.5 ms on
//   cuBLAS (2 layers; eager and PDL off were unaffected). The late trigger ends that and is
//   faster at batch 1 too: OLMoE 1.20-1.22 ms, Qwen1.5 2.24-2.26 ms (2.45 on cuBLAS).
#include "common.cuh"
#include "mma.cuh"
#include "moetron/core/error.hpp"

namespace moetron {
namespace kernels {
namespace {

constexpr int kWarps = 8;        // warps per block, each a k slice
constexpr int kUnroll = 4;       // 32-wide k chunks per warp and turn
constexpr int kBlockRows = 16;   // weight rows (output columns) per block: one MMA row block
constexpr int kTurnK = kWarps * kMmaChunk * kUnroll;  // k a block covers per turn

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(bf16* p, float v) { *p = __float2bfloat16(v); }

template <int kTokenBlocks, typename OutT>
__global__ void __launch_bounds__(32 * kWarps)
    dense_gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w,
                      const bf16* __restrict__ bias, int m, int n, int k, OutT* __restrict__ out) {
  __shared__ float partial[kWarps - 1][kTokenBlocks][4][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * kBlockRows;
  // This lane's weight rows g and g + 8 (null past n: zeros).
  const bf16* w_lo = n0 + g < n ? w + static_cast<int64_t>(n0 + g) * k : nullptr;
  const bf16* w_hi = n0 + g + 8 < n ? w + static_cast<int64_t>(n0 + g + 8) * k : nullptr;
  const uint4 zero = make_uint4(0, 0, 0, 0);

  // Chunk u of the turn at kc: k = kc + u * kWarps * kMmaChunk + 8t. k is a multiple of 8, so a
  // lane's 8 values are all in or all out.
  auto load_weights = [&](uint4 (&wv)[kUnroll][2], int kc) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int kk = kc + u * kWarps * kMmaChunk + t * 8;
      const bool in = kk < k;
      wv[u][0] = in && w_lo ? __ldcs(reinterpret_cast<const uint4*>(w_lo + kk)) : zero;
      wv[u][1] = in && w_hi ? __ldcs(reinterpret_cast<const uint4*>(w_hi + kk)) : zero;
    }
  };
  uint4 next[kUnroll][2];
  const int kc0 = warp * kMmaChunk;
  load_weights(next, kc0);  // before the wait: see the file comment
  pdl_wait();

  // Token g of each block of 8 (null past m: zeros).
  const bf16* xrow[kTokenBlocks];
#pragma unroll
  for (int tb = 0; tb < kTokenBlocks; ++tb)
    xrow[tb] = tb * 8 + g < m ? x + static_cast<int64_t>(tb * 8 + g) * k : nullptr;

  float acc[kTokenBlocks][4] = {};
  // The loop runs on kc, the same in every lane of a warp (mma.sync needs the whole warp).
  for (int kc = kc0; kc < k; kc += kTurnK) {
    uint4 wv[kUnroll][2], xv[kUnroll][kTokenBlocks];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      wv[u][0] = next[u][0];
      wv[u][1] = next[u][1];
      const int kk = kc + u * kWarps * kMmaChunk + t * 8;
#pragma unroll
      for (int tb = 0; tb < kTokenBlocks; ++tb)
        xv[u][tb] = kk < k && xrow[tb] ? __ldg(reinterpret_cast<const uint4*>(xrow[tb] + kk)) : zero;
    }
    if (kc + kTurnK < k) load_weights(next, kc + kTurnK);  // the next turn streams under the MMAs
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int tb = 0; tb < kTokenBlocks; ++tb) mma_chunk(acc[tb], wv[u][0], wv[u][1], xv[u][tb]);
  }

  pdl_trigger();  // late: see the file comment
  // The warps' sums meet in warp 0, in warp order (deterministic).
  if (warp > 0) {
#pragma unroll
    for (int tb = 0; tb < kTokenBlocks; ++tb)
#pragma unroll
      for (int i = 0; i < 4; ++i) partial[warp - 1][tb][i][lane] = acc[tb][i];
  }
  __syncthreads();
  if (warp > 0) return;
#pragma unroll
  for (int tb = 0; tb < kTokenBlocks; ++tb)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float v = acc[tb][i];
#pragma unroll
      for (int p = 0; p < kWarps - 1; ++p) v += partial[p][tb][i][lane];
      const int row = tb * 8 + 2 * t + (i & 1);  // the token
      const int col = n0 + g + (i >= 2 ? 8 : 0);  // the weight row
      if (row >= m || col >= n) continue;
      if (bias) v += __bfloat162float(bias[col]);
      store_out(out + static_cast<int64_t>(row) * n + col, v);
    }
}

template <int kTokenBlocks, typename OutT>
void launch_dense_gemv(const bf16* x, const bf16* w, const bf16* bias, int64_t m, int64_t n,
                       int64_t k, OutT* out, cudaStream_t stream) {
  launch(dense_gemv_kernel<kTokenBlocks, OutT>, static_cast<unsigned>(ceil_div(n, kBlockRows)),
         32 * kWarps, 0, stream, x, w, bias, static_cast<int>(m), static_cast<int>(n),
         static_cast<int>(k), out);
}

template <typename OutT>
void dispatch_dense_gemv(const bf16* x, const bf16* w, const bf16* bias, int64_t m, int64_t n,
                         int64_t k, OutT* out, cudaStream_t stream) {
  MOETRON_ASSERT(dense_gemv_supports(m, n, k, x, w));
  if (m <= 8) return launch_dense_gemv<1>(x, w, bias, m, n, k, out, stream);
  launch_dense_gemv<2>(x, w, bias, m, n, k, out, stream);
}

}  // namespace

bool dense_gemv_supports(int64_t m, int64_t n, int64_t k, const void* x, const void* w) {
  constexpr int64_t kMaxDim = 1LL << 30;  // 32-bit index arithmetic with room for the turn
  return m >= 1 && m <= kDenseGemvMaxRows && n >= 1 && n <= kMaxDim && k >= 8 && k <= kMaxDim &&
         k % 8 == 0 && aligned16(x) && aligned16(w);
}

void dense_gemv(const bf16* x, const bf16* w, const bf16* bias, int64_t m, int64_t n, int64_t k,
                bf16* out, cudaStream_t stream) {
  dispatch_dense_gemv(x, w, bias, m, n, k, out, stream);
}

void dense_gemv(const bf16* x, const bf16* w, const bf16* bias, int64_t m, int64_t n, int64_t k,
                float* out, cudaStream_t stream) {
  dispatch_dense_gemv(x, w, bias, m, n, k, out, stream);
}

}  // namespace kernels
}  // namespace moetron
