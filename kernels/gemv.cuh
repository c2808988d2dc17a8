// The GEMV building block shared by the expert GEMVs (grouped_gemm.cu) and the dense ones
// (dense_gemv.cu): one warp streams two weight rows with 16-byte loads, several in flight per
// lane, and dots them with a few activation rows. At decode sizes the weights are the whole
// cost, so what matters is how many bytes each lane keeps in flight.
#pragma once
#include "common.cuh"

namespace moetron {
namespace kernels {

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
template <int R, int kUnroll = kGemvUnroll>
__device__ __forceinline__ void warp_dot2(const bf16* __restrict__ w0, const bf16* __restrict__ w1,
                                          const bf16* __restrict__ a, const int (&a_row)[R],
                                          int rows, int k_dim, float (&d0)[R], float (&d1)[R]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < R; ++r) d0[r] = d1[r] = 0.0f;
  for (int k0 = lane * 8; k0 < k_dim; k0 += kGemvChunk * kUnroll) {
    uint4 raw0[kUnroll], raw1[kUnroll];
    // All loads first: kUnroll x 2 x 16 bytes per lane in flight before any math.
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k = k0 + u * kGemvChunk;
      const bool in = k < k_dim;
      raw0[u] = in ? __ldcs(reinterpret_cast<const uint4*>(w0 + k)) : make_uint4(0, 0, 0, 0);
      raw1[u] = in ? __ldcs(reinterpret_cast<const uint4*>(w1 + k)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
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

}  // namespace kernels
}  // namespace moetron
