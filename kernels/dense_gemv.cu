// Dense projections at decode sizes (at most kGemvMaxRows rows): out = x . W^T (+ bias) as
// GEMVs on CUDA cores. cuBLAS's small-M kernels read the 2k-6k-wide projection weights at
// about 45% of HBM bandwidth on an H200 (perf/NOTES.md, the ncu table); these stream them with
// the expert GEMVs' warp_dot2, and add the bias in the epilogue (one launch fewer).
#include <cstdlib>
#include <limits>

#include "gemv.cuh"
#include "moetron/core/error.hpp"

namespace moetron {
namespace kernels {
namespace {

constexpr int kColumnsPerBlock = 2 * kGemvWarps;
// Twice the expert GEMVs' loads in flight per lane: a dense projection of n columns has only
// n / 2 warps (OLMoE's output projection: under 8 per SM), each with a 2k-4k row to stream,
// so each must keep more bytes in flight (a 2048-long row is one round of loads).
constexpr int kDenseUnroll = 2 * kGemvUnroll;

__device__ __forceinline__ int block_first_column() { return blockIdx.x * kColumnsPerBlock; }

// The bytes of the block's weight rows (contiguous): what it prefetches before it waits.
__device__ __forceinline__ int64_t block_weight_bytes(int k_dim, int n_dim) {
  return static_cast<int64_t>(min(kColumnsPerBlock, n_dim - block_first_column())) * k_dim *
         static_cast<int64_t>(sizeof(bf16));
}

// Each warp owns output columns n and n + 1 (n even; a lone last column when n_dim is odd).
// Lane r writes row r: every lane holds every row's sum after warp_dot2.
template <int R, typename Out>
__global__ void __launch_bounds__(32 * kGemvWarps)
    dense_gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w,
                      const bf16* __restrict__ bias, int rows, int k_dim, int n_dim,
                      Out* __restrict__ out) {
  pdl_enter_prefetching(w + block_first_column() * static_cast<int64_t>(k_dim),
                        block_weight_bytes(k_dim, n_dim));  // first: see common.cuh
  const int n = block_first_column() + (threadIdx.x >> 5) * 2;
  if (n >= n_dim) return;
  const bool pair = n + 1 < n_dim;
  int a_row[R];
#pragma unroll
  for (int r = 0; r < R; ++r) a_row[r] = r < rows ? r : 0;
  const bf16* w0 = w + static_cast<int64_t>(n) * k_dim;
  const bf16* w1 = pair ? w0 + k_dim : w0;  // a lone column dots its row twice, writes once
  float d0[R], d1[R];
  warp_dot2<R, kDenseUnroll>(w0, w1, x, a_row, rows, k_dim, d0, d1);
  const float b0 = bias ? __bfloat162float(bias[n]) : 0.0f;
  const float b1 = bias && pair ? __bfloat162float(bias[n + 1]) : 0.0f;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (lane != r || r >= rows) continue;
    Out* o = out + static_cast<int64_t>(r) * n_dim + n;
    if constexpr (sizeof(Out) == sizeof(float)) {
      o[0] = d0[r] + b0;
      if (pair) o[1] = d1[r] + b1;
    } else {
      o[0] = __float2bfloat16(d0[r] + b0);
      if (pair) o[1] = __float2bfloat16(d1[r] + b1);
    }
  }
}

template <int R, typename Out>
void launch_dense_gemv(const bf16* x, const bf16* w, const bf16* bias, int64_t rows, int64_t k,
                       int64_t n, Out* out, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(ceil_div(n, kColumnsPerBlock));
  launch(dense_gemv_kernel<R, Out>, blocks, 32 * kGemvWarps, 0, stream, x, w, bias,
         static_cast<int>(rows), static_cast<int>(k), static_cast<int>(n), out);
}

template <typename Out>
void dense_gemv_rows(const bf16* x, const bf16* w, const bf16* bias, int64_t rows, int64_t k,
                     int64_t n, Out* out, cudaStream_t stream) {
  // The fewest rows the kernel unrolls for: registers hold R sums per weight row.
  if (rows <= 1) return launch_dense_gemv<1>(x, w, bias, rows, k, n, out, stream);
  if (rows <= 2) return launch_dense_gemv<2>(x, w, bias, rows, k, n, out, stream);
  if (rows <= 4) return launch_dense_gemv<4>(x, w, bias, rows, k, n, out, stream);
  launch_dense_gemv<kGemvMaxRows>(x, w, bias, rows, k, n, out, stream);
}

}  // namespace

// At most this many rows take the GEMV: MOETRON_DENSE_GEMV_ROWS (0 to kGemvMaxRows) sets it for
// measurements (0: always cuBLAS), as MOETRON_PDL does for PDL.
int64_t dense_gemv_max_rows() {
  static const int64_t rows = [] {
    const char* env = std::getenv("MOETRON_DENSE_GEMV_ROWS");
    if (env == nullptr) return kDenseGemvDefaultRows;
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    MOETRON_CHECK(end != env && *end == '\0' && v >= 0 && v <= kGemvMaxRows,
                  "MOETRON_DENSE_GEMV_ROWS='" << env << "': expected 0 to " << kGemvMaxRows);
    return static_cast<int64_t>(v);
  }();
  return rows;
}

bool dense_gemv_applies(int64_t rows, int64_t k, int64_t n, const void* x, const void* w) {
  // Past kDenseGemvMaxWeightBytes (a vocabulary projection) cuBLAS's wide kernels already read
  // the weights near the HBM rate (93% for OLMoE's LM head in the ncu table).
  return rows >= 1 && rows <= dense_gemv_max_rows() && k % 8 == 0 && n >= 1 && aligned16(x) &&
         aligned16(w) && n * k * static_cast<int64_t>(sizeof(bf16)) <= kDenseGemvMaxWeightBytes &&
         n <= std::numeric_limits<int>::max() && k <= std::numeric_limits<int>::max();
}

void dense_gemv(const bf16* x, const bf16* w, const bf16* bias, int64_t rows, int64_t k,
                int64_t n, void* out, bool out_f32, cudaStream_t stream) {
  MOETRON_ASSERT(dense_gemv_applies(rows, k, n, x, w) && !(out_f32 && bias));
  if (out_f32)
    dense_gemv_rows(x, w, bias, rows, k, n, static_cast<float*>(out), stream);
  else
    dense_gemv_rows(x, w, bias, rows, k, n, static_cast<bf16*>(out), stream);
}

}  // namespace kernels
}  // namespace moetron
