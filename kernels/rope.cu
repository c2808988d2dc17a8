// Rotary position embedding, rotate-half (NeoX) layout: element i and i + hd/2 of every head
// form one rotated pair.
#include <algorithm>

#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

constexpr int kRopeThreads = 128;

// One rotated pair: (a, b) at angle (cos c, sin s), rounded to bf16.
__device__ __forceinline__ void rotate_pair(float a, float b, float c, float s, bf16& lo, bf16& hi) {
  lo = __float2bfloat16(a * c - b * s);
  hi = __float2bfloat16(b * c + a * s);
}

// Rotates the pairs of `heads` heads of one token's row.
__device__ void rotate_heads(bf16* row, int heads, int half, const float* cos_s,
                             const float* sin_s) {
  for (int p = threadIdx.x; p < heads * half; p += blockDim.x) {
    const int h = p / half, i = p - h * half;
    bf16* head = row + static_cast<int64_t>(h) * 2 * half;
    rotate_pair(__bfloat162float(head[i]), __bfloat162float(head[i + half]), cos_s[i], sin_s[i],
                head[i], head[i + half]);
  }
}

// The cos/sin of one position's hd/2 angles, in fp32 exactly as Hugging Face computes them.
__device__ void fill_rope_table(int32_t position, int half, int head_dim, float theta,
                                float* cos_s, float* sin_s) {
  const float pos = static_cast<float>(position);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float inv_freq =
        1.0f / powf(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    float s, c;
    sincosf(pos * inv_freq, &s, &c);
    cos_s[i] = c;
    sin_s[i] = s;
  }
}

__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16(x)); }

// x[c] = bf16(x[c] * inv_rms * w[c]) over cols values: RMSNorm as rmsnorm() computes it
// (fp32 sum of squares, bf16 result), on a row held in shared memory.
__device__ void norm_row(float* x, int cols, const bf16* __restrict__ w, float eps, int first,
                         int stride) {
  float sum = 0.0f;
  for (int c = first; c < cols; c += stride) sum += x[c] * x[c];
  sum = stride == 32 ? warp_sum(sum) : block_sum(sum);
  const float inv_rms = rsqrtf(sum / static_cast<float>(cols) + eps);
  for (int c = first; c < cols; c += stride) x[c] = round_bf16(x[c] * inv_rms * __bfloat162float(w[c]));
}

// One block per token: the token's q and k columns of the QKV projection are read into shared
// memory as fp32, QK-normed (rounded to bf16 as the separate norm would store them), rotated,
// and written (q to q_out, k to the cache); v goes straight to the cache. Replaces the split,
// two norms, RoPE and the KV append: one launch instead of six a layer in decode.
// The block has a thread per 16-byte piece of the row (attention_inputs()), so at batch 1
// every load is issued at once: a loop of dependent 2-byte loads made this kernel 20 us a layer
// on an H200 (the ncu table in perf/NOTES.md). kVec: the row's pieces are 16-byte aligned.
template <bool kVec>
__global__ void attention_inputs_kernel(const bf16* __restrict__ qkv, int q_cols, int kv_cols,
                                        const int32_t* __restrict__ positions,
                                        const int32_t* __restrict__ slot_mapping, int head_dim,
                                        float theta, int norm_kind, const bf16* __restrict__ q_w,
                                        const bf16* __restrict__ k_w, float eps,
                                        bf16* __restrict__ q_out, bf16* __restrict__ k_cache,
                                        bf16* __restrict__ v_cache) {
  pdl_enter();  // first: see common.cuh
  extern __shared__ float smem[];
  const int half = head_dim / 2, width = q_cols + kv_cols;
  float* cos_s = smem;
  float* sin_s = smem + half;
  float* row = smem + head_dim;  // q then k, fp32
  const int64_t t = blockIdx.x;
  const bf16* in = qkv + t * static_cast<int64_t>(width + kv_cols);
  const int64_t slot = slot_mapping[t];
  constexpr int kPiece = kVec ? 8 : 1;  // bf16 per load
  for (int c = threadIdx.x * kPiece; c < width + kv_cols; c += blockDim.x * kPiece) {
    if constexpr (kVec) {
      const uint4 raw = *reinterpret_cast<const uint4*>(in + c);
      if (c >= width) {  // v: straight to the cache
        if (slot >= 0) *reinterpret_cast<uint4*>(v_cache + slot * kv_cols + c - width) = raw;
        continue;
      }
      const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(h[i]);
        row[c + 2 * i] = f.x;
        row[c + 2 * i + 1] = f.y;
      }
    } else if (c >= width) {
      if (slot >= 0) v_cache[slot * kv_cols + c - width] = in[c];
    } else {
      row[c] = __bfloat162float(in[c]);
    }
  }
  fill_rope_table(positions[t], half, head_dim, theta, cos_s, sin_s);
  __syncthreads();
  if (norm_kind == kHeadNormWholeRow) {
    norm_row(row, q_cols, q_w, eps, threadIdx.x, blockDim.x);
    norm_row(row + q_cols, kv_cols, k_w, eps, threadIdx.x, blockDim.x);
    __syncthreads();
  } else if (norm_kind == kHeadNormPerHead) {
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    for (int h = threadIdx.x >> 5; h < width / head_dim; h += warps)
      norm_row(row + h * head_dim, head_dim, h * head_dim < q_cols ? q_w : k_w, eps, lane, 32);
    __syncthreads();
  }
  for (int p = threadIdx.x; p < (width / head_dim) * half; p += blockDim.x) {
    const int h = p / half, i = p - h * half, c = h * head_dim + i;
    bf16 lo, hi;
    rotate_pair(row[c], row[c + half], cos_s[i], sin_s[i], lo, hi);
    if (c < q_cols) {
      q_out[t * q_cols + c] = lo;
      q_out[t * q_cols + c + half] = hi;
    } else if (slot >= 0) {
      k_cache[slot * kv_cols + c - q_cols] = lo;
      k_cache[slot * kv_cols + c - q_cols + half] = hi;
    }
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
  fill_rope_table(positions[t], half, head_dim, theta, cos_s, sin_s);
  __syncthreads();
  rotate_heads(q + t * nq * head_dim, nq, half, cos_s, sin_s);
  rotate_heads(k + t * nk * head_dim, nk, half, cos_s, sin_s);
}

}  // namespace

size_t attention_inputs_smem_bytes(int64_t q_cols, int64_t kv_cols, int64_t head_dim) {
  return static_cast<size_t>(q_cols + kv_cols + head_dim) * sizeof(float);
}

void attention_inputs(const bf16* qkv, int64_t q_cols, int64_t kv_cols, const int32_t* positions,
                      const int32_t* slot_mapping, int64_t num_tokens, int64_t head_dim,
                      float theta, int norm_kind, const bf16* q_norm, const bf16* k_norm,
                      float eps, bf16* q_out, bf16* k_cache, bf16* v_cache, cudaStream_t stream) {
  if (num_tokens == 0) return;
  // 16-byte pieces need every row start (qkv rows, cache slots) and the q | k | v borders on
  // a multiple of 8 elements.
  const bool vec = head_dim % 8 == 0 && aligned16(qkv) && aligned16(v_cache);
  const int64_t row_cols = q_cols + 2 * kv_cols;
  const int64_t pieces = vec ? ceil_div(row_cols, 8) : row_cols;
  // A thread per piece, whole warps, 128 to 1024 threads (more pieces: threads loop).
  const auto threads =
      static_cast<unsigned>(std::clamp<int64_t>(ceil_div(pieces, 32) * 32, 128, 1024));
  const size_t smem = attention_inputs_smem_bytes(q_cols, kv_cols, head_dim);
  auto kernel = vec ? attention_inputs_kernel<true> : attention_inputs_kernel<false>;
  launch(kernel, num_tokens, threads, smem, stream, qkv, static_cast<int>(q_cols),
         static_cast<int>(kv_cols), positions, slot_mapping, static_cast<int>(head_dim), theta,
         norm_kind, q_norm, k_norm, eps, q_out, k_cache, v_cache);
}

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
