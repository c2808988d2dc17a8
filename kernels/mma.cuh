// The tensor-core instruction the kernels share: mma.sync m16n8k16, bf16 inputs, fp32 sums
// (sm_80 and later), and the register-only use of it for GEMVs (mma_chunk).
#pragma once
#include <cstdint>

namespace moetron {
namespace kernels {

// c += a . b for one 16x16 A fragment (a0..a3) and one 16x8 B fragment (b0, b1), in the
// fragment layout of the PTX ISA ("Matrix Fragments for mma.m16n8k16").
__device__ __forceinline__ void mma_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  mma_16816(c, a[0], a[1], a[2], a[3], b0, b1);
}

// GEMVs on tensor cores, with no shared memory: the weights are the 16-row A operand and up to 8
// tokens the 8-column B operand. kMmaChunk is the k one lane group covers per step: 4 lanes x 8
// bf16 (one 16-byte load each).
constexpr int kMmaChunk = 32;

// One 32-wide chunk of k for a 16-row weight block and 8 tokens. Lane (g = lane / 4, t = lane %
// 4) holds 8 consecutive k of weight rows g and g + 8 (lo, hi) and of token g (x). The MMA
// reads lane t's pairs as virtual k 2t, 2t + 1 (first register of a row) and 2t + 8, 2t + 9
// (second), so two MMAs over (lo.x, hi.x, lo.y, hi.y | x.x, x.y) and (lo.z, hi.z, lo.w, hi.w |
// x.z, x.w) cover the chunk's 32 k once each, A and B permuted alike (a dot product does not
// care in which order k is summed). In the sums c[i], lane (g, t) holds weight row g (i < 2)
// or g + 8 (i >= 2) against token 2t + (i & 1).
__device__ __forceinline__ void mma_chunk(float (&c)[4], const uint4& lo, const uint4& hi,
                                          const uint4& x) {
  mma_16816(c, lo.x, hi.x, lo.y, hi.y, x.x, x.y);
  mma_16816(c, lo.z, hi.z, lo.w, hi.w, x.z, x.w);
}

}  // namespace kernels
}  // namespace moetron
