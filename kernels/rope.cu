// Rotary position embedding, rotate-half (NeoX) layout: element i and i + hd/2 of every head
// form one rotated pair.
#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

constexpr int kRopeThreads = 128;

// Rotates the pairs of `heads` heads of one token's row.
__device__ void rotate_heads(bf16* row, int heads, int half, const float* cos_s,
                             const float* sin_s) {
  for (int p = threadIdx.x; p < heads * half; p += blockDim.x) {
    const int h = p / half, i = p - h * half;
    bf16* head = row + static_cast<int64_t>(h) * 2 * half;
    const float a = __bfloat162float(head[i]), b = __bfloat162float(head[i + half]);
    head[i] = __float2bfloat16(a * cos_s[i] - b * sin_s[i]);
    head[i + half] = __float2bfloat16(b * cos_s[i] + a * sin_s[i]);
  }
}

// One block per token; the token's cos/sin table (hd/2 entries) is computed once in shared
// memory, in fp32 exactly as Hugging Face computes it.
__global__ void rope_kernel(bf16* q, bf16* k, const int32_t* __restrict__ positions, int nq,
                            int nk, int head_dim, float theta) {
  pdl_enter();  // first: see common.cuh
  extern __shared__ float table[];
  const int half = head_dim / 2;
  float* cos_s = table;
  float* sin_s = table + half;
  const int64_t t = blockIdx.x;
  const float pos = static_cast<float>(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float inv_freq =
        1.0f / powf(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    float s, c;
    sincosf(pos * inv_freq, &s, &c);
    cos_s[i] = c;
    sin_s[i] = s;
  }
  __syncthreads();
  rotate_heads(q + t * nq * head_dim, nq, half, cos_s, sin_s);
  rotate_heads(k + t * nk * head_dim, nk, half, cos_s, sin_s);
}

}  // namespace

void rope(bf16* q, bf16* k, const int32_t* positions, int64_t num_tokens, int64_t num_q_heads,
          int64_t num_kv_heads, int64_t head_dim, float theta, cudaStream_t stream) {
  if (num_tokens == 0) return;
  const size_t smem = static_cast<size_t>(head_dim) * sizeof(float);
  launch(rope_kernel, num_tokens, kRopeThreads, smem, stream, q, k, positions,
      static_cast<int>(num_q_heads), static_cast<int>(num_kv_heads), static_cast<int>(head_dim),
      theta);
}

}  // namespace kernels
}  // namespace moetron
