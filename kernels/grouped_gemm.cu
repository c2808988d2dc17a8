// Grouped expert GEMMs on tensor cores (WMMA bf16 x bf16 -> fp32, portable to sm_80/89/90).
//
// The rows are the permuted tokens, expert after expert; expert e owns rows
// [offsets[e], offsets[e+1]) and row tiles [tile_offsets[e], tile_offsets[e+1]), both read from
// device memory (moe_route writes them), so the launch needs only host-known bounds and can be
// captured in a CUDA graph. Each block computes one 64 x 64 output tile of one expert: grid x
// walks row tiles (a block past the last tile returns at once), grid y the output columns.
// Operands stream through shared memory in a three-stage cp.async pipeline.
//
// kSwiGLU: the weight holds gate rows then up rows; the block computes the gate and the up tile
// of the same columns and writes silu(gate) * up. Otherwise it writes the plain product.
#include <mma.h>

#include "common.cuh"
#include "moetron/core/error.hpp"

namespace moetron {
namespace kernels {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kBM = kGroupedGemmTileRows;
constexpr int kBN = 64;
constexpr int kBK = 32;
constexpr int kLds = kBK + 8;  // padded rows: ldmatrix-style reads spread over the banks
constexpr int kStages = 3;
constexpr int kThreads = 128;  // 4 warps in 2 x 2, each a 32 x 32 piece of the tile
constexpr int kLdc = kBN + 4;

template <bool kSwiGLU>
struct GemmSmem {
  static constexpr int kMats = kSwiGLU ? 2 : 1;  // weight tiles per stage: gate and up, or one
  union {
    struct {
      bf16 a[kStages][kBM][kLds];
      bf16 b[kStages][kMats][kBN][kLds];
    } pipe;
    float c[kMats][kBM][kLdc];  // the accumulators, for the epilogue, once the pipe is drained
  };
};

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;  // 0: fill the 16 bytes with zeros, read nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }

// The expert that owns row tile `tile`: the last e with tile_offsets[e] <= tile.
__device__ int expert_of_tile(const int32_t* tile_offsets, int num_local, int tile) {
  int lo = 0, hi = num_local - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tile_offsets[mid] <= tile) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <bool kSwiGLU>
__global__ void __launch_bounds__(kThreads)
    grouped_gemm_kernel(const bf16* __restrict__ a, const bf16* __restrict__ w,
                        const int32_t* __restrict__ offsets,
                        const int32_t* __restrict__ tile_offsets, int num_local, int k_dim,
                        int n_dim, int64_t w_expert_stride, bf16* __restrict__ c) {
  using Smem = GemmSmem<kSwiGLU>;
  constexpr int kMats = Smem::kMats;
  __shared__ __align__(128) Smem sm;

  const int tile = blockIdx.x;
  if (tile >= tile_offsets[num_local]) return;
  const int e = expert_of_tile(tile_offsets, num_local, tile);
  const int row0 = offsets[e] + (tile - tile_offsets[e]) * kBM;
  const int rows = min(kBM, offsets[e + 1] - row0);
  const int n0 = blockIdx.y * kBN;
  const bf16* we = w + e * w_expert_stride;

  auto load_stage = [&](int stage, int kt) {
    const int k0 = kt * kBK;
    for (int i = threadIdx.x; i < kBM * (kBK / 8); i += kThreads) {
      const int r = i / (kBK / 8), kc = (i % (kBK / 8)) * 8;
      const bool valid = r < rows && k0 + kc < k_dim;
      const bf16* src = valid ? a + static_cast<int64_t>(row0 + r) * k_dim + k0 + kc : a;
      cp_async_16(&sm.pipe.a[stage][r][kc], src, valid);
    }
#pragma unroll
    for (int m = 0; m < kMats; ++m) {
      for (int i = threadIdx.x; i < kBN * (kBK / 8); i += kThreads) {
        const int n = i / (kBK / 8), kc = (i % (kBK / 8)) * 8;
        const bool valid = n0 + n < n_dim && k0 + kc < k_dim;
        const bf16* src =
            valid ? we + static_cast<int64_t>(m * n_dim + n0 + n) * k_dim + k0 + kc : we;
        cp_async_16(&sm.pipe.b[stage][m][n][kc], src, valid);
      }
    }
  };

  const int warp = threadIdx.x >> 5;
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kMats][2][2];
#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[m][i][j], 0.0f);

  const int k_tiles = (k_dim + kBK - 1) / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<kStages - 2>();  // tile kt has landed
    __syncthreads();               // ... for every thread; and stage (kt - 1) is consumed
    if (kt + kStages - 1 < k_tiles) load_stage((kt + kStages - 1) % kStages, kt + kStages - 1);
    cp_async_commit();
    const int st = kt % kStages;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &sm.pipe.a[st][wm + 16 * i][kk], kLds);
#pragma unroll
      for (int m = 0; m < kMats; ++m) {
#pragma unroll
        for (int j = 0; j < 2; ++j)
          wmma::load_matrix_sync(fb[j], &sm.pipe.b[st][m][wn + 16 * j][kk], kLds);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[m][i][j], fa[i], fb[j], acc[m][i][j]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipe's shared memory becomes the epilogue's

#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(&sm.c[m][wm + 16 * i][wn + 16 * j], acc[m][i][j], kLdc,
                                wmma::mem_row_major);
  __syncthreads();

  for (int i = threadIdx.x; i < kBM * kBN; i += kThreads) {
    const int r = i / kBN, n = i % kBN;
    if (r >= rows || n0 + n >= n_dim) continue;
    float v = sm.c[0][r][n];
    if constexpr (kSwiGLU) v = silu(v) * sm.c[1][r][n];
    c[static_cast<int64_t>(row0 + r) * n_dim + n0 + n] = __float2bfloat16(v);
  }
}

template <bool kSwiGLU>
void launch_grouped_gemm(const bf16* a, const bf16* w, const MoeRouting& routing,
                         int64_t num_local, int64_t max_rows, int64_t k_dim, int64_t n_dim,
                         int64_t w_expert_stride, bf16* c, cudaStream_t stream) {
  if (num_local == 0 || max_rows == 0 || n_dim == 0) return;
  MOETRON_ASSERT(k_dim % 8 == 0 && aligned16(a) && aligned16(w));
  // Each expert's last tile may be partial, so tiles <= ceil(max_rows / kBM) + num_local.
  const dim3 grid(static_cast<unsigned>(ceil_div(max_rows, kBM) + num_local),
                  static_cast<unsigned>(ceil_div(n_dim, kBN)));
  grouped_gemm_kernel<kSwiGLU><<<grid, kThreads, 0, stream>>>(
      a, w, routing.offsets, routing.tile_offsets, static_cast<int>(num_local),
      static_cast<int>(k_dim), static_cast<int>(n_dim), w_expert_stride, c);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void grouped_gemm_swiglu(const bf16* x_perm, const bf16* gate_up, const MoeRouting& routing,
                         int64_t num_local, int64_t max_rows, int64_t hidden, int64_t inter,
                         bf16* act, cudaStream_t stream) {
  launch_grouped_gemm<true>(x_perm, gate_up, routing, num_local, max_rows, hidden, inter,
                            2 * inter * hidden, act, stream);
}

void grouped_gemm_down(const bf16* act, const bf16* down, const MoeRouting& routing,
                       int64_t num_local, int64_t max_rows, int64_t inter, int64_t hidden,
                       bf16* y, cudaStream_t stream) {
  launch_grouped_gemm<false>(act, down, routing, num_local, max_rows, inter, hidden,
                             hidden * inter, y, stream);
}

}  // namespace kernels
}  // namespace moetron
