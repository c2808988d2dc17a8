// Grouped expert GEMMs: per-expert GEMVs on CUDA cores for decode-sized loads, and tiled
// GEMMs on tensor cores (WMMA bf16 x bf16 -> fp32, portable to sm_80/89/90) for the rest.
//
// The rows are the permuted tokens, expert after expert. Each block reads what its row tile
// computes from the tile table moe_route writes in device memory (expert, first row, rows), so
// the launch needs only host-known bounds and can be captured in a CUDA graph. A block past the
// last tile returns at once. The gate/up GEMM may read its input rows through token_of_row
// from the tokens' own rows (no permuted copy).
//
// Tensor cores: each block computes one output tile of one expert (16, 64 or 128 rows): grid x
// walks row tiles, grid y the output columns. Operands stream through shared memory in a
// three-stage cp.async pipeline.
//
// GEMV (a tile is at most kGemvMaxRows rows): there the weights are the whole cost and a
// tensor-core tile would idle on padding rows, so each warp streams two weight rows with 16-byte
// loads, several in flight per lane, and dots them with the tile's few activation rows (read
// through L1, shared by the block's warps). Grid x walks column blocks, grid y row tiles.
//
// kSwiGLU: the weight holds gate rows then up rows; gate and up of the same columns are computed
// together and silu(gate) * up is written. Otherwise the plain product.
#include <mma.h>

#include <algorithm>

#include "common.cuh"
#include "mma.cuh"
#include "moetron/core/error.hpp"

namespace moetron {
namespace kernels {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kBK = 32;
constexpr int kLds = kBK + 8;  // padded rows: fragment loads spread over the banks
constexpr int kStages = 3;
// Tile shapes: BM x BN outputs per block (per weight matrix), each warp a WM x WN piece of
// (WM / 16) x (WN / 16) WMMA fragments. Larger warp pieces load fewer fragments per product.
template <int BM, int BN, int WM, int WN, bool kSwiGLU>
struct GemmShape {
  static constexpr int kMats = kSwiGLU ? 2 : 1;  // weight tiles per stage: gate and up, or one
  static constexpr int kWarpsN = BN / WN;
  static constexpr int kFragsM = WM / 16, kFragsN = WN / 16;
  static constexpr int kThreads = 32 * (BM / WM) * kWarpsN;
  static constexpr int kLdc = BN + 4;
  struct Pipe {
    bf16 a[kStages][BM][kLds];
    bf16 b[kStages][kMats][BN][kLds];
  };
  using Epilogue = float[kMats][BM][kLdc];  // the accumulators, once the pipe is drained
  static constexpr size_t kSmemBytes =
      sizeof(Pipe) > sizeof(Epilogue) ? sizeof(Pipe) : sizeof(Epilogue);
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

// The input row of tile row r (tile rows start at row0): the token's own row when token_of_row
// is given (the permutation folded into the loads), else the permuted row.
__device__ __forceinline__ int tile_input_row(const int32_t* __restrict__ token_of_row, int row0, int r) {
  return token_of_row ? token_of_row[row0 + r] : row0 + r;
}

template <int BM, int BN, int WM, int WN, bool kSwiGLU>
__global__ void __launch_bounds__(GemmShape<BM, BN, WM, WN, kSwiGLU>::kThreads)
    grouped_gemm_kernel(const bf16* __restrict__ a, const int32_t* __restrict__ token_of_row,
                        const bf16* __restrict__ w, const int4* __restrict__ tiles, int k_dim,
                        int n_dim, int64_t w_expert_stride, bf16* __restrict__ c) {
  pdl_enter();  // first: see common.cuh
  using Shape = GemmShape<BM, BN, WM, WN, kSwiGLU>;
  constexpr int kMats = Shape::kMats, kThreads = Shape::kThreads, kLdc = Shape::kLdc;
  constexpr int kFM = Shape::kFragsM, kFN = Shape::kFragsN;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  auto& pipe = *reinterpret_cast<typename Shape::Pipe*>(smem_raw);
  auto& acc_s = *reinterpret_cast<typename Shape::Epilogue*>(smem_raw);

  const int4 work = tiles[blockIdx.x];  // {expert, first row, rows, -}
  const int e = work.x, row0 = work.y, rows = work.z;
  if (rows == 0) return;
  const int n0 = blockIdx.y * BN;
  const bf16* we = w + e * w_expert_stride;
  // The input row of each tile row: permuted (row0 + r) or the token's own row.
  __shared__ int a_row[BM];
  for (int r = threadIdx.x; r < BM; r += kThreads)
    a_row[r] = r >= rows ? 0 : tile_input_row(token_of_row, row0, r);
  __syncthreads();

  auto load_stage = [&](int stage, int kt) {
    const int k0 = kt * kBK;
    for (int i = threadIdx.x; i < BM * (kBK / 8); i += kThreads) {
      const int r = i / (kBK / 8), kc = (i % (kBK / 8)) * 8;
      const bool valid = r < rows && k0 + kc < k_dim;
      const bf16* src = valid ? a + static_cast<int64_t>(a_row[r]) * k_dim + k0 + kc : a;
      cp_async_16(&pipe.a[stage][r][kc], src, valid);
    }
#pragma unroll
    for (int m = 0; m < kMats; ++m) {
      for (int i = threadIdx.x; i < BN * (kBK / 8); i += kThreads) {
        const int n = i / (kBK / 8), kc = (i % (kBK / 8)) * 8;
        const bool valid = n0 + n < n_dim && k0 + kc < k_dim;
        const bf16* src =
            valid ? we + static_cast<int64_t>(m * n_dim + n0 + n) * k_dim + k0 + kc : we;
        cp_async_16(&pipe.b[stage][m][n][kc], src, valid);
      }
    }
  };

  const int warp = threadIdx.x >> 5;
  const int wm = (warp / Shape::kWarpsN) * WM, wn = (warp % Shape::kWarpsN) * WN;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kMats][kFM][kFN];
#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int i = 0; i < kFM; ++i)
#pragma unroll
      for (int j = 0; j < kFN; ++j) wmma::fill_fragment(acc[m][i][j], 0.0f);

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
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[kFM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb[kFN];
#pragma unroll
      for (int i = 0; i < kFM; ++i)
        wmma::load_matrix_sync(fa[i], &pipe.a[st][wm + 16 * i][kk], kLds);
#pragma unroll
      for (int m = 0; m < kMats; ++m) {
#pragma unroll
        for (int j = 0; j < kFN; ++j)
          wmma::load_matrix_sync(fb[j], &pipe.b[st][m][wn + 16 * j][kk], kLds);
#pragma unroll
        for (int i = 0; i < kFM; ++i)
#pragma unroll
          for (int j = 0; j < kFN; ++j) wmma::mma_sync(acc[m][i][j], fa[i], fb[j], acc[m][i][j]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipe's shared memory becomes the epilogue's

#pragma unroll
  for (int m = 0; m < kMats; ++m)
#pragma unroll
    for (int i = 0; i < kFM; ++i)
#pragma unroll
      for (int j = 0; j < kFN; ++j)
        wmma::store_matrix_sync(&acc_s[m][wm + 16 * i][wn + 16 * j], acc[m][i][j], kLdc,
                                wmma::mem_row_major);
  __syncthreads();

  // 8 columns per thread and store (n_dim is a multiple of 8, so a chunk is all in or all out).
  for (int i = threadIdx.x; i < BM * (BN / 8); i += kThreads) {
    const int r = i / (BN / 8), n = (i % (BN / 8)) * 8;
    if (r >= rows || n0 + n >= n_dim) continue;
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      v[j] = acc_s[0][r][n + j];
      if constexpr (kSwiGLU) v[j] = silu(v[j]) * acc_s[1][r][n + j];
    }
    store_bf16<8>(c + static_cast<int64_t>(row0 + r) * n_dim + n0 + n, v);
  }
}


// ---- GEMV path ----------------------------------------------------------------------------------

constexpr int kGemvWarps = 8;   // warps per block
constexpr int kGemvUnroll = 4;  // 16-byte weight loads in flight per lane and weight row
constexpr int kGemvChunk = 32 * 8;  // bf16 of a weight row that one warp load covers

__device__ __forceinline__ void bf16x8_to_float(const uint4& raw, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// One warp: the dot products of weight rows w0 and w1 with the tile's activation rows
// a + a_row[r] * k_dim (R at most, `rows` valid), summed over the warp: every lane ends with
// all of them.
template <int R>
__device__ __forceinline__ void warp_dot2(const bf16* __restrict__ w0, const bf16* __restrict__ w1,
                                          const bf16* __restrict__ a, const int (&a_row)[R],
                                          int rows, int k_dim, float (&d0)[R], float (&d1)[R]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < R; ++r) d0[r] = d1[r] = 0.0f;
  for (int k0 = lane * 8; k0 < k_dim; k0 += kGemvChunk * kGemvUnroll) {
    uint4 raw0[kGemvUnroll], raw1[kGemvUnroll];
    // All loads first: kGemvUnroll x 2 x 16 bytes per lane in flight before any math.
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int k = k0 + u * kGemvChunk;
      const bool in = k < k_dim;
      raw0[u] = in ? __ldcs(reinterpret_cast<const uint4*>(w0 + k)) : make_uint4(0, 0, 0, 0);
      raw1[u] = in ? __ldcs(reinterpret_cast<const uint4*>(w1 + k)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int k = k0 + u * kGemvChunk;
      if (k >= k_dim) break;
      float f0[8], f1[8];
      bf16x8_to_float(raw0[u], f0);
      bf16x8_to_float(raw1[u], f1);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        const bf16* xr = a + static_cast<int64_t>(a_row[r]) * k_dim + k;
        float x[8];
        bf16x8_to_float(__ldg(reinterpret_cast<const uint4*>(xr)), x);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          d0[r] = fmaf(f0[i], x[i], d0[r]);
          d1[r] = fmaf(f1[i], x[i], d1[r]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    d0[r] = warp_sum(d0[r]);
    d1[r] = warp_sum(d1[r]);
  }
}

// Each warp owns one output column (SwiGLU: gate row n and up row n_dim + n) or two (plain:
// rows n and n + 1; n_dim is even).
template <int R, bool kSwiGLU>
__global__ void __launch_bounds__(32 * kGemvWarps)
    grouped_gemv_kernel(const bf16* __restrict__ a, const int32_t* __restrict__ token_of_row,
                        const bf16* __restrict__ w, const int4* __restrict__ tiles, int k_dim,
                        int n_dim, int64_t w_expert_stride, bf16* __restrict__ c) {
  pdl_enter();  // first: see common.cuh
  constexpr int kColsPerWarp = kSwiGLU ? 1 : 2;
  const int n = (blockIdx.x * kGemvWarps + (threadIdx.x >> 5)) * kColsPerWarp;
  const int4 work = tiles[blockIdx.y];  // {expert, first row, rows, -}
  const int e = work.x, row0 = work.y, rows = work.z;
  if (rows == 0 || n >= n_dim) return;
  int a_row[R];  // the input row of each tile row: permuted or the token's own
#pragma unroll
  for (int r = 0; r < R; ++r)
    a_row[r] = r >= rows ? 0 : tile_input_row(token_of_row, row0, r);
  const bf16* w0 = w + e * w_expert_stride + static_cast<int64_t>(n) * k_dim;
  const bf16* w1 = kSwiGLU ? w0 + static_cast<int64_t>(n_dim) * k_dim : w0 + k_dim;
  float d0[R], d1[R];
  warp_dot2<R>(w0, w1, a, a_row, rows, k_dim, d0, d1);
  // Lane r writes row r (the sums are in every lane; the unrolled test keeps them in registers).
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (lane != r || r >= rows) continue;
    bf16* out = c + static_cast<int64_t>(row0 + r) * n_dim + n;
    if constexpr (kSwiGLU)
      *out = __float2bfloat16(silu(d0[r]) * d1[r]);
    else
      *reinterpret_cast<__nv_bfloat162*>(out) = __floats2bfloat162_rn(d0[r], d1[r]);
  }
}

// One token (decode at batch 1): its k experts' down projections and their weighted sum in one
// launch, so neither the permuted outputs nor the combine kernel are needed. Each block owns two
// output columns; warp w takes slots w, w + kGemvWarps, ...; the per-warp sums are added in
// warp order (deterministic). Each expert output is rounded to bf16 before it is weighted, as
// the separate down GEMM would store it.
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_down_combine_kernel(const bf16* __restrict__ act, const int32_t* __restrict__ row_of_slot,
                             const int32_t* __restrict__ ids, const float* __restrict__ weights,
                             int k, int first_expert, const bf16* __restrict__ down, int k_dim,
                             int n_dim, int64_t w_expert_stride, bf16* __restrict__ out) {
  pdl_enter();  // first: see common.cuh
  __shared__ float partial[kGemvWarps][2];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n = blockIdx.x * 2;
  float s0 = 0.0f, s1 = 0.0f;
  for (int j = warp; j < k; j += kGemvWarps) {
    const int row = row_of_slot[j];
    if (row < 0) continue;  // an expert this rank does not hold
    const bf16* w0 = down + (ids[j] - first_expert) * w_expert_stride + static_cast<int64_t>(n) * k_dim;
    const int a_row[1] = {row};
    float d0[1], d1[1];
    warp_dot2<1>(w0, w0 + k_dim, act, a_row, 1, k_dim, d0, d1);
    const float wt = weights[j];
    s0 += wt * __bfloat162float(__float2bfloat16(d0[0]));
    s1 += wt * __bfloat162float(__float2bfloat16(d1[0]));
  }
  if (lane == 0) {
    partial[warp][0] = s0;
    partial[warp][1] = s1;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float o0 = 0.0f, o1 = 0.0f;
#pragma unroll
    for (int w = 0; w < kGemvWarps; ++w) {
      o0 += partial[w][0];
      o1 += partial[w][1];
    }
    *reinterpret_cast<__nv_bfloat162*>(out + n) = __floats2bfloat162_rn(o0, o1);
  }
}

// ---- tensor-core GEMV path (decode) -------------------------------------------------------------
// A decode step's experts get a few to a few dozen rows each: the weights are the whole cost,
// and the 16-row WMMA tiles read them at about half of HBM (ncu, batch 64, perf/NOTES.md ninth
// session): a third of each tile is padding, each K step of 32 waits on a block barrier, and
// the grid ends in a ragged wave. Here the weights play the role of the MMA's 16-row A operand
// and the tile's tokens the 8-column B operand (m16n8k16), so no token row is padding beyond
// the last group of 8. Each lane loads 16 bytes of a weight row straight into registers, and
// 16 bytes of a token row beside them: the dot product does not care in which order k is
// summed, so both operands take the same permutation of k and need no shared memory or
// shuffles (see mma_chunk). The block's warps split K and add up at the end, so the grid has
// many short blocks (a small last wave).
constexpr int kMmaWarps = 4;                  // warps per block, each a quarter of K
constexpr int kMmaRowBlocks = 2;              // 16-row weight blocks per warp (MMA m-blocks)
constexpr int kMmaRows = 16 * kMmaRowBlocks;  // weight rows per block
constexpr int kMmaUnroll = 2;                 // 32-wide k chunks loaded ahead per warp

// Row i (0..15) of a warp's 16-row MMA block rb, the warp's output columns starting at n0 (null
// past the matrix). Plain: columns n0 .. n0 + 31. SwiGLU: gate rows of columns n0 .. n0 + 15
// (row block 0) and up rows of the same columns (row block 1), so that a lane holds gate and up
// of the same outputs.
template <bool kSwiGLU>
__device__ __forceinline__ const bf16* mma_weight_row(const bf16* __restrict__ w, int e, int64_t w_expert_stride,
                                                      int n0, int rb, int i, int n_dim, int k_dim) {
  const int col = kSwiGLU ? n0 + i : n0 + rb * 16 + i;
  const int64_t row = kSwiGLU ? col + static_cast<int64_t>(rb) * n_dim : col;
  return col < n_dim ? w + e * w_expert_stride + row * k_dim : nullptr;
}

// This lane's weight rows: g and g + 8 of each row block (the MMA's A fragment rows).
template <bool kSwiGLU>
__device__ __forceinline__ void mma_weight_rows(const bf16* __restrict__ w, int e, int64_t w_expert_stride,
                                                int n0, int n_dim, int k_dim, int g,
                                                const bf16* (&wrow)[kMmaRowBlocks][2]) {
#pragma unroll
  for (int rb = 0; rb < kMmaRowBlocks; ++rb)
#pragma unroll
    for (int h = 0; h < 2; ++h) wrow[rb][h] = mma_weight_row<kSwiGLU>(w, e, w_expert_stride, n0, rb, g + 8 * h, n_dim, k_dim);
}

// The 16 bytes at k of each of this lane's weight rows (zeros past k_dim or the matrix).
__device__ __forceinline__ void load_weight_chunk(const bf16* const (&wrow)[kMmaRowBlocks][2], int k, bool in,
                                                  uint4 (&wv)[kMmaRowBlocks][2]) {
#pragma unroll
  for (int rb = 0; rb < kMmaRowBlocks; ++rb)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      wv[rb][h] = in && wrow[rb][h] ? __ldcs(reinterpret_cast<const uint4*>(wrow[rb][h] + k))
                                    : make_uint4(0, 0, 0, 0);
}

// Writes a warp's sums (lane (g, t): acc[rb][tb][i] for weight row rb * 16 + g (i < 2) or + 8
// (i >= 2) against tile row tb * 8 + 2t + (i & 1)) as the outputs of the tile's rows, starting
// at output column n0. SwiGLU: row block 0 holds gate, 1 up of the same columns.
template <int kTokenBlocks, bool kSwiGLU>
__device__ __forceinline__ void store_mma_tile(const float (&acc)[kMmaRowBlocks][kTokenBlocks][4], int token_blocks,
                                               int g, int t, int rows, int row0, int n0, int n_dim,
                                               bf16* __restrict__ c) {
#pragma unroll
  for (int tb = 0; tb < kTokenBlocks; ++tb) {
    if (tb >= token_blocks) break;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = tb * 8 + 2 * t + (i & 1);
      if (r >= rows) continue;
      bf16* out = c + static_cast<int64_t>(row0 + r) * n_dim;
      const int col = n0 + g + (i >= 2 ? 8 : 0);
      if constexpr (kSwiGLU) {
        if (col < n_dim) out[col] = __float2bfloat16(silu(acc[0][tb][i]) * acc[1][tb][i]);
      } else {
#pragma unroll
        for (int rb = 0; rb < kMmaRowBlocks; ++rb)
          if (col + rb * 16 < n_dim) out[col + rb * 16] = __float2bfloat16(acc[rb][tb][i]);
      }
    }
  }
}

// Each block: kMmaRows weight rows of one tile's expert against the tile's tokens (up to
// 8 * kTokenBlocks). Plain: output columns n0 .. n0 + 31. SwiGLU: gate rows n0 .. n0 + 15 (row
// block 0) and up rows of the same columns (row block 1), so a lane holds gate and up of the
// same outputs. In the accumulators c[rb][tb][i], lane (g, t) holds weight row rb * 16 + g
// (i < 2) or + 8 (i >= 2) and token tb * 8 + 2t + (i & 1).
template <int kTokenBlocks, bool kSwiGLU>
__global__ void __launch_bounds__(32 * kMmaWarps)
    grouped_mma_gemv_kernel(const bf16* __restrict__ a, const int32_t* __restrict__ token_of_row,
                            const bf16* __restrict__ w, const int4* __restrict__ tiles, int k_dim,
                            int n_dim, int64_t w_expert_stride, bf16* __restrict__ c) {
  pdl_enter();  // first: see common.cuh
  constexpr int kCols = kSwiGLU ? 16 : kMmaRows;  // output columns per block
  __shared__ float partial[kMmaWarps - 1][kMmaRowBlocks][kTokenBlocks][4][32];
  const int4 work = tiles[blockIdx.y];  // {expert, first row, rows, -}
  const int e = work.x, row0 = work.y, rows = work.z;
  const int n0 = blockIdx.x * kCols;
  if (rows == 0 || n0 >= n_dim) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int token_blocks = (rows + 7) / 8;  // groups of 8 tokens holding a row (warp-uniform)

  // This lane's weight rows and token rows (null past the tile).
  const bf16* wrow[kMmaRowBlocks][2];
  mma_weight_rows<kSwiGLU>(w, e, w_expert_stride, n0, n_dim, k_dim, g, wrow);
  const bf16* xrow[kTokenBlocks];
#pragma unroll
  for (int tb = 0; tb < kTokenBlocks; ++tb) {
    const int r = tb * 8 + g;
    xrow[tb] = r >= rows ? nullptr
                         : a + static_cast<int64_t>(tile_input_row(token_of_row, row0, r)) * k_dim;
  }

  float acc[kMmaRowBlocks][kTokenBlocks][4] = {};
  const uint4 zero = make_uint4(0, 0, 0, 0);
  // Warp w takes chunks w, w + kMmaWarps, ...; kMmaUnroll of them loaded before any MMA. The
  // loop runs on the chunk's start, the same in every lane: mma.sync needs the whole warp (a
  // lane-dependent bound hung the warp where k_dim is not a multiple of 32; GPU test, ninth
  // session); lanes past k_dim load zeros instead.
  for (int kc = warp * kMmaChunk; kc < k_dim; kc += kMmaWarps * kMmaChunk * kMmaUnroll) {
    uint4 wv[kMmaUnroll][kMmaRowBlocks][2], xv[kMmaUnroll][kTokenBlocks];
#pragma unroll
    for (int u = 0; u < kMmaUnroll; ++u) {
      const int k = kc + u * kMmaWarps * kMmaChunk + t * 8;
      const bool in = k < k_dim;  // k_dim is a multiple of 8: a lane's 8 are all in or all out
      load_weight_chunk(wrow, k, in, wv[u]);
#pragma unroll
      for (int tb = 0; tb < kTokenBlocks; ++tb)
        xv[u][tb] = in && tb < token_blocks && xrow[tb] ? __ldg(reinterpret_cast<const uint4*>(xrow[tb] + k)) : zero;
    }
#pragma unroll
    for (int u = 0; u < kMmaUnroll; ++u)
#pragma unroll
      for (int tb = 0; tb < kTokenBlocks; ++tb) {
        if (tb >= token_blocks) break;
#pragma unroll
        for (int rb = 0; rb < kMmaRowBlocks; ++rb) mma_chunk(acc[rb][tb], wv[u][rb][0], wv[u][rb][1], xv[u][tb]);
      }
  }

  // The warps' partial sums meet in warp 0 (fixed order: deterministic).
  if (warp > 0) {
#pragma unroll
    for (int rb = 0; rb < kMmaRowBlocks; ++rb)
#pragma unroll
      for (int tb = 0; tb < kTokenBlocks; ++tb)
#pragma unroll
        for (int i = 0; i < 4; ++i) partial[warp - 1][rb][tb][i][lane] = acc[rb][tb][i];
  }
  __syncthreads();
  if (warp > 0) return;
#pragma unroll
  for (int rb = 0; rb < kMmaRowBlocks; ++rb)
#pragma unroll
    for (int tb = 0; tb < kTokenBlocks; ++tb)
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int p = 0; p < kMmaWarps - 1; ++p) acc[rb][tb][i] += partial[p][rb][tb][i][lane];
  store_mma_tile<kTokenBlocks, kSwiGLU>(acc, token_blocks, g, t, rows, row0, n0, n_dim, c);
}

// Wide tiles (decode, more than kMmaTileMaxMeanRows rows an expert on average: Mixtral-like
// experts from batch 100). At 64 rows a tile, the kernel above read the weights at 48% of HBM (ncu,
// Mixtral 256 sequences, seventeenth session): its warps, each a quarter of K of the same 32
// weight rows, load all 64 token rows of their chunk, twice the weight bytes, from L2, and wait
// for them; and an expert with more rows than a tile streams its weights once per tile (1.41x
// the weights there). Here a block's 4 warps own 32 weight rows each over the whole K; the
// block's weight and token chunks stream through shared memory in a kWideStages-deep cp.async
// pipeline (the token chunk loaded once for the 128 weight rows), and the warps read their
// fragments with the same permuted-k layout as mma_chunk. A tile holds up to kWideTileRows
// rows, so an expert a few rows above the average still streams its weights once; only the
// token blocks the tile fills are multiplied. (Weights straight into registers and tokens read
// through L1 per token block lost: 2.4 ms against 1.3 for the Mixtral expert call at 256
// tokens; each token block's loads likely waited on the one before, not profiled.)
constexpr int kWideWarps = 4;
constexpr int kWideWeightRows = kWideWarps * kMmaRows;  // weight rows per block
constexpr int kWideK = 64;                              // k per pipeline stage: 128-byte rows
// Two stages (56 KiB of shared memory at 96-row tiles: 3 blocks an SM on an H200, bound by the
// 150 registers a thread) beat three (84 KiB: 2 blocks) and four (112 KiB: 1; blocks an SM as
// computed, not profiled): Mixtral at 256 sequences 50.0 / 53.1 / 89.5 ms a decode step, the
// expert call alone at 256 tokens 1.34 / 1.42 / 2.56 ms (H200, perf/NOTES.md, eighteenth session).
constexpr int kWideStages = 2;

// A stage's rows are 8 chunks of 16 bytes; chunk c of row r is stored at c ^ 4 (r & 1), so that
// the 8 lanes of a quarter warp (two rows, chunks t and t + 4 u) hit distinct banks.
__device__ __forceinline__ int wide_chunk_slot(int r, int c) { return c ^ ((r & 1) << 2); }

template <int kTokenRows>
struct WideStage {
  uint4 w[kWideWeightRows][kWideK / 8];
  uint4 x[kTokenRows][kWideK / 8];
};

// Split K (the down projection only, where its blocks alone would leave SMs idle: grid z is the
// split). Each split's block writes its sums as float32 to partial[split][row][column] and counts
// itself in counters[tile, column block]; the last of them to arrive adds every split's sums in
// split order (the same result whichever arrives last), stores the outputs and resets the count
// to zero for the next launch. Counters start at zero (the caller's persistent buffer).
struct WideSplit {
  int k_steps;     // kWideK steps of K a split covers
  float* partial;  // [splits, max_rows, n_dim]; null without a split
  int* counters;   // [max_tiles, column blocks]
  int64_t max_rows;
};

// This lane's sums as they sit in the accumulators (store_mma_tile's order) in split s's rows of
// partial: for each token block the tile fills, row tb * 8 + 2t + (i & 1) and column
// n0 + rb * 16 + g + 8 (i >= 2).
template <int kTokenBlocks, typename Visit>
__device__ __forceinline__ void for_each_partial(const WideSplit& split, int s, int token_blocks, int g, int t,
                                                 int rows, int row0, int n0, int n_dim, Visit visit) {
#pragma unroll
  for (int rb = 0; rb < kMmaRowBlocks; ++rb)
#pragma unroll
    for (int tb = 0; tb < kTokenBlocks; ++tb) {
      if (tb >= token_blocks) break;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = tb * 8 + 2 * t + (i & 1), col = n0 + rb * 16 + g + (i >= 2 ? 8 : 0);
        if (r < rows && col < n_dim)
          visit(rb, tb, i, split.partial + (static_cast<int64_t>(s) * split.max_rows + row0 + r) * n_dim + col);
      }
    }
}

template <int kTokenBlocks, bool kSwiGLU>
__global__ void __launch_bounds__(32 * kWideWarps)
    grouped_mma_wide_kernel(const bf16* __restrict__ a, const int32_t* __restrict__ token_of_row,
                            const bf16* __restrict__ w, const int4* __restrict__ tiles, int k_dim,
                            int n_dim, int64_t w_expert_stride, bf16* __restrict__ c, WideSplit split) {
  pdl_enter();  // first: see common.cuh
  constexpr int kTokenRows = 8 * kTokenBlocks;
  constexpr int kChunks = kWideK / 8;
  constexpr int kCols = kSwiGLU ? 16 : kMmaRows;  // output columns per warp
  using Stage = WideStage<kTokenRows>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Stage* stages = reinterpret_cast<Stage*>(smem_raw);
  __shared__ const bf16* token_ptr[kTokenRows];  // each tile row's input row (null past the tile)
  __shared__ const bf16* weight_ptr[kWideWeightRows];  // each weight row (null past the matrix)

  const int4 work = tiles[blockIdx.y];  // {expert, first row, rows, -}
  const int e = work.x, row0 = work.y, rows = work.z;
  const int block_n0 = blockIdx.x * kWideWarps * kCols;
  if (rows == 0 || block_n0 >= n_dim) return;  // the whole block
  for (int r = threadIdx.x; r < kTokenRows; r += blockDim.x)
    token_ptr[r] = r < rows ? a + static_cast<int64_t>(tile_input_row(token_of_row, row0, r)) * k_dim : nullptr;
  // Block weight row j = warp * 32 + rb * 16 + i is the row lane (g, t) of that warp reads for
  // row block rb as g + 8h = i (mma_weight_rows' order).
  for (int j = threadIdx.x; j < kWideWeightRows; j += blockDim.x) {
    const int wp = j / kMmaRows, rb = (j % kMmaRows) / 16, i = j % 16;
    weight_ptr[j] = mma_weight_row<kSwiGLU>(w, e, w_expert_stride, block_n0 + wp * kCols, rb, i, n_dim, k_dim);
  }
  __syncthreads();
  const int token_rows = ((rows + 7) / 8) * 8;  // rows of the token blocks the tile fills

  auto load_stage = [&](Stage& st, int k0) {
    for (int i = threadIdx.x; i < kWideWeightRows * kChunks; i += blockDim.x) {
      const int r = i / kChunks, ch = i % kChunks, k = k0 + ch * 8;
      const bool valid = weight_ptr[r] != nullptr && k < k_dim;
      cp_async_16(&st.w[r][wide_chunk_slot(r, ch)], valid ? weight_ptr[r] + k : w, valid);
    }
    for (int i = threadIdx.x; i < token_rows * kChunks; i += blockDim.x) {
      const int r = i / kChunks, ch = i % kChunks, k = k0 + ch * 8;
      const bool valid = token_ptr[r] != nullptr && k < k_dim;
      cp_async_16(&st.x[r][wide_chunk_slot(r, ch)], valid ? token_ptr[r] + k : a, valid);
    }
  };

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int token_blocks = token_rows / 8;  // warp-uniform
  float acc[kMmaRowBlocks][kTokenBlocks][4] = {};
  // This block's share of K: steps k_first .. k_first + k_steps - 1 of kWideK.
  const int k_first = blockIdx.z * split.k_steps;
  const int k_steps = min(split.k_steps, (k_dim + kWideK - 1) / kWideK - k_first);
#pragma unroll
  for (int s = 0; s < kWideStages - 1; ++s) {
    if (s < k_steps) load_stage(stages[s], (k_first + s) * kWideK);
    cp_async_commit();
  }
  for (int s = 0; s < k_steps; ++s) {
    cp_async_wait<kWideStages - 2>();  // stage s has landed
    __syncthreads();                   // ... for every thread; and stage s - 1 is consumed
    if (s + kWideStages - 1 < k_steps)
      load_stage(stages[(s + kWideStages - 1) % kWideStages], (k_first + s + kWideStages - 1) * kWideK);
    cp_async_commit();
    const Stage& st = stages[s % kWideStages];
#pragma unroll
    for (int u = 0; u < kWideK / kMmaChunk; ++u) {
      const int ch = u * (kMmaChunk / 8) + t;  // this lane's chunk: k u * 32 + t * 8 .. + 7
      uint4 wv[kMmaRowBlocks][2];
#pragma unroll
      for (int rb = 0; rb < kMmaRowBlocks; ++rb)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = warp * kMmaRows + rb * 16 + g + 8 * h;
          wv[rb][h] = st.w[r][wide_chunk_slot(r, ch)];
        }
#pragma unroll
      for (int tb = 0; tb < kTokenBlocks; ++tb) {
        if (tb >= token_blocks) break;
        const int r = tb * 8 + g;
        const uint4 xv = st.x[r][wide_chunk_slot(r, ch)];
#pragma unroll
        for (int rb = 0; rb < kMmaRowBlocks; ++rb) mma_chunk(acc[rb][tb], wv[rb][0], wv[rb][1], xv);
      }
    }
  }
  cp_async_wait<0>();

  const int n0 = block_n0 + warp * kCols;
  if constexpr (!kSwiGLU) {
    if (gridDim.z > 1) {
      for_each_partial<kTokenBlocks>(split, blockIdx.z, token_blocks, g, t, rows, row0, n0, n_dim,
                                     [&](int rb, int tb, int i, float* p) { *p = acc[rb][tb][i]; });
      __threadfence();  // the sums are visible device-wide before the count says so
      __syncthreads();
      __shared__ bool last;
      int* count = split.counters + blockIdx.y * gridDim.x + blockIdx.x;
      if (threadIdx.x == 0) {
        last = atomicAdd(count, 1) == static_cast<int>(gridDim.z) - 1;
        if (last) *count = 0;  // every split has counted: ready for the next launch
      }
      __syncthreads();
      if (!last) return;
      __threadfence();  // the other splits' sums, seen after their counts
      // Every split's sums, this block's own included, read back in split order into acc.
      for (int s = 0; s < static_cast<int>(gridDim.z); ++s)
        for_each_partial<kTokenBlocks>(split, s, token_blocks, g, t, rows, row0, n0, n_dim,
                                       [&](int rb, int tb, int i, const float* p) {
                                         acc[rb][tb][i] = s == 0 ? __ldcg(p) : acc[rb][tb][i] + __ldcg(p);
                                       });
    }
  }
  store_mma_tile<kTokenBlocks, kSwiGLU>(acc, token_blocks, g, t, rows, row0, n0, n_dim, c);
}

// What one grouped GEMM multiplies: c[r] = a_r . W_e^T over the row tiles of `tiles`.
struct GroupedOperands {
  const bf16* a;
  const int32_t* token_of_row;  // null: a is permuted; else a_r = a[token_of_row[r]]
  const bf16* w;
  const int4* tiles;
  int64_t max_tiles, k_dim, n_dim, w_expert_stride;
  bf16* c;
  DownSplit split;  // the wide tiles' split K (plain products only)
  int64_t max_rows;
};

template <int R, bool kSwiGLU>
void launch_gemv(const GroupedOperands& op, cudaStream_t stream) {
  constexpr int kColsPerBlock = kGemvWarps * (kSwiGLU ? 1 : 2);
  const dim3 grid(static_cast<unsigned>(ceil_div(op.n_dim, kColsPerBlock)),
                  static_cast<unsigned>(op.max_tiles));
  launch(grouped_gemv_kernel<R, kSwiGLU>, grid, 32 * kGemvWarps, 0, stream, op.a,
         op.token_of_row, op.w, op.tiles, static_cast<int>(op.k_dim), static_cast<int>(op.n_dim),
         op.w_expert_stride, op.c);
}

constexpr size_t kWideSmemBytes = kWideStages * sizeof(WideStage<kWideTileRows>);

// The wide kernel with its shared memory opted in on the current device.
template <bool kSwiGLU>
auto wide_kernel() {
  auto kernel = grouped_mma_wide_kernel<kWideTileRows / 8, kSwiGLU>;
  opt_in_dynamic_smem(kernel, kWideSmemBytes);
  return kernel;
}

template <bool kSwiGLU>
void launch_mma_wide(const GroupedOperands& op, cudaStream_t stream) {
  constexpr int kColsPerBlock = kWideWarps * (kSwiGLU ? 16 : kMmaRows);
  const int64_t k_steps = ceil_div(op.k_dim, kWideK);
  const DownSplit& ds = op.split;
  const int64_t col_blocks = ceil_div(op.n_dim, kColsPerBlock);
  const bool split = !kSwiGLU && ds.splits > 1 && ds.partial != nullptr &&
                     op.max_tiles * col_blocks <= ds.counter_capacity;
  // Splits of equal kWideK steps; none left empty (k_steps >= splits).
  const int64_t splits = split ? std::min<int64_t>(ds.splits, k_steps) : 1;
  const int64_t steps_per_split = ceil_div(k_steps, splits);
  const WideSplit ws{static_cast<int>(steps_per_split), split ? ds.partial : nullptr, ds.counters, op.max_rows};
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(op.max_tiles),
                  static_cast<unsigned>(ceil_div(k_steps, steps_per_split)));
  launch(wide_kernel<kSwiGLU>(), grid, 32 * kWideWarps, kWideSmemBytes, stream, op.a, op.token_of_row, op.w,
         op.tiles, static_cast<int>(op.k_dim), static_cast<int>(op.n_dim), op.w_expert_stride, op.c, ws);
}

template <int kTokenBlocks, bool kSwiGLU>
void launch_mma_gemv(const GroupedOperands& op, cudaStream_t stream) {
  constexpr int kCols = kSwiGLU ? 16 : kMmaRows;
  const dim3 grid(static_cast<unsigned>(ceil_div(op.n_dim, kCols)), static_cast<unsigned>(op.max_tiles));
  launch(grouped_mma_gemv_kernel<kTokenBlocks, kSwiGLU>, grid, 32 * kMmaWarps, 0, stream, op.a,
         op.token_of_row, op.w, op.tiles, static_cast<int>(op.k_dim), static_cast<int>(op.n_dim),
         op.w_expert_stride, op.c);
}

// ---- tensor-core path ---------------------------------------------------------------------------

template <int BM, int BN, int WM, int WN, bool kSwiGLU>
void launch_shape(const GroupedOperands& op, cudaStream_t stream) {
  using Shape = GemmShape<BM, BN, WM, WN, kSwiGLU>;
  auto kernel = grouped_gemm_kernel<BM, BN, WM, WN, kSwiGLU>;
  opt_in_dynamic_smem(kernel, Shape::kSmemBytes);
  const dim3 grid(static_cast<unsigned>(op.max_tiles),
                  static_cast<unsigned>(ceil_div(op.n_dim, BN)));
  launch(kernel, grid, Shape::kThreads, Shape::kSmemBytes, stream, op.a, op.token_of_row, op.w,
         op.tiles, static_cast<int>(op.k_dim), static_cast<int>(op.n_dim), op.w_expert_stride,
         op.c);
}

// Large tiles reuse each loaded operand twice as often; small ones waste fewer rows on experts
// that got few tokens; GEMVs waste none where every expert has a handful.
template <bool kSwiGLU>
void launch_grouped_gemm(int tile_rows, DecodeExpertKernel decode, const GroupedOperands& op,
                         cudaStream_t stream) {
  if (op.max_tiles == 0 || op.n_dim == 0) return;
  MOETRON_ASSERT(op.k_dim % 8 == 0 && op.n_dim % 8 == 0 && aligned16(op.a) && aligned16(op.w) &&
                 aligned16(op.c));
  if (tile_rows >= kMmaMinTileRows && tile_rows <= kGemvMaxRows && decode == DecodeExpertKernel::kMma)
    return launch_mma_gemv<1, kSwiGLU>(op, stream);
  switch (tile_rows) {
    case 1:
      return launch_gemv<1, kSwiGLU>(op, stream);
    case 2:
      return launch_gemv<2, kSwiGLU>(op, stream);
    case 4:
      return launch_gemv<4, kSwiGLU>(op, stream);
    case kGemvMaxRows:
      return launch_gemv<kGemvMaxRows, kSwiGLU>(op, stream);
    case kMmaTileRows:
      return launch_mma_gemv<kMmaTileRows / 8, kSwiGLU>(op, stream);
    case kWideTileRows:
      return launch_mma_wide<kSwiGLU>(op, stream);
    case kTinyTileRows:
      // 4 warps side by side, each 16 rows (SwiGLU: 16 columns of gate and of up).
      return launch_shape<kTinyTileRows, kSwiGLU ? 64 : 128, 16, kSwiGLU ? 16 : 32, kSwiGLU>(
          op, stream);
    case kSmallTileRows:
      if (decode == DecodeExpertKernel::kMma) return launch_mma_gemv<kSmallTileRows / 8, kSwiGLU>(op, stream);
      return launch_shape<kSmallTileRows, 64, 32, 32, kSwiGLU>(op, stream);
    case kLargeTileRows: {
      // 4 warps of 64 x 64 (SwiGLU: 64 x 32 of gate and of up, the same accumulators).
      constexpr int kLargeN = kSwiGLU ? 64 : 128, kLargeWarpN = kSwiGLU ? 32 : 64;
      return launch_shape<kLargeTileRows, kLargeN, 64, kLargeWarpN, kSwiGLU>(op, stream);
    }
    default:
      MOETRON_FAIL("grouped GEMM: no kernel for tiles of " << tile_rows << " rows");
  }
}

}  // namespace

int wide_blocks_per_sm() {
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, wide_kernel<false>(), 32 * kWideWarps,
                                                           kWideSmemBytes));
  return per_sm;
}

int wide_down_splits(int64_t num_tokens, int64_t k, int64_t num_local, int64_t hidden, int64_t inter, int sms,
                     int blocks_per_sm) {
  if (num_local <= 0 || hidden <= 0) return 1;
  const int64_t rows_per_expert = std::max<int64_t>(num_tokens * k / num_local, 1);
  const int64_t blocks = num_local * ceil_div(rows_per_expert, kWideTileRows) * ceil_div(hidden, kWideWeightRows);
  const int64_t two_waves = int64_t{2} * sms * std::max(blocks_per_sm, 1);
  const int64_t splits = std::clamp<int64_t>(two_waves / blocks, 1, kMaxDownSplits);
  return static_cast<int>(std::min(splits, ceil_div(inter, kWideK)));
}

bool wide_tiles_fill(int64_t num_local, int64_t hidden, int64_t inter, int sms) {
  const int64_t gate_up_blocks = ceil_div(inter, kWideWarps * 16), down_blocks = ceil_div(hidden, kWideWeightRows);
  return std::min(gate_up_blocks, down_blocks) * num_local >= sms;
}

int grouped_gemm_tile_rows(int64_t num_tokens, int64_t k, int64_t num_local, int64_t hidden, int64_t inter,
                           int sms, DecodeExpertKernel decode) {
  // A token picks k distinct experts, so no expert gets more rows than there are tokens.
  if (num_tokens <= kGemvMaxRows) {
    int rows = 1;
    while (rows < num_tokens) rows *= 2;
    return rows;
  }
  const int64_t rows_per_expert = num_tokens * k / std::max<int64_t>(num_local, 1);
  if (decode == DecodeExpertKernel::kMma && rows_per_expert < 2 * kLargeTileRows) {
    if (rows_per_expert > kMmaTileMaxMeanRows && wide_tiles_fill(num_local, hidden, inter, sms)) return kWideTileRows;
    return rows_per_expert <= kMmaTileRows ? kMmaTileRows : kSmallTileRows;
  }
  if (rows_per_expert <= 2 * kTinyTileRows) return kTinyTileRows;
  return rows_per_expert >= 2 * kLargeTileRows ? kLargeTileRows : kSmallTileRows;
}

int64_t grouped_gemm_max_tiles(int tile_rows, int64_t max_rows, int64_t num_local) {
  if (num_local == 0 || max_rows == 0) return 0;
  return std::min(ceil_div(max_rows, tile_rows) + num_local, max_rows);
}

void grouped_gemm_swiglu(int tile_rows, DecodeExpertKernel decode, const bf16* x, const int32_t* token_of_row,
                         const bf16* gate_up, const MoeRouting& routing, int64_t num_local,
                         int64_t max_rows, int64_t hidden, int64_t inter, bf16* act,
                         cudaStream_t stream) {
  MOETRON_ASSERT(routing.max_tiles == grouped_gemm_max_tiles(tile_rows, max_rows, num_local));
  launch_grouped_gemm<true>(tile_rows, decode, {x, token_of_row, gate_up, routing.tiles, routing.max_tiles,
                                        hidden, inter, 2 * inter * hidden, act, DownSplit{}, max_rows}, stream);
}

void grouped_gemm_down(int tile_rows, DecodeExpertKernel decode, const bf16* act, const bf16* down,
                       const MoeRouting& routing, int64_t num_local, int64_t max_rows,
                       int64_t inter, int64_t hidden, bf16* y, cudaStream_t stream, const DownSplit& split) {
  MOETRON_ASSERT(routing.max_tiles == grouped_gemm_max_tiles(tile_rows, max_rows, num_local));
  launch_grouped_gemm<false>(tile_rows, decode, {act, nullptr, down, routing.tiles, routing.max_tiles,
                                         inter, hidden, hidden * inter, y, split, max_rows}, stream);
}

void gemv_down_combine(const bf16* act, const int32_t* row_of_slot, const int32_t* ids,
                       const float* weights, int64_t k, int64_t first_expert, const bf16* down,
                       int64_t inter, int64_t hidden, bf16* out, cudaStream_t stream) {
  MOETRON_ASSERT(inter % 8 == 0 && hidden % 2 == 0 && aligned16(act) && aligned16(down) &&
                 aligned16(out));
  launch(gemv_down_combine_kernel, static_cast<unsigned>(hidden / 2), 32 * kGemvWarps, 0, stream,
         act, row_of_slot, ids, weights, static_cast<int>(k), static_cast<int>(first_expert), down,
         static_cast<int>(inter), static_cast<int>(hidden), hidden * inter, out);
}

}  // namespace kernels
}  // namespace moetron
