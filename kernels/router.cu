// MoE router. router_topk: softmax over the expert logits, top-k and renormalisation in one
// kernel, one warp per token (each lane holds up to 8 of at most 256 experts in registers).
// router_fused (decode, a few tokens): the logits GEMV and the top-k in one launch: warps
// compute one expert's logits for every token, and the grid's last block to finish picks the
// top-k (a cuBLAS launch, which cannot overlap its neighbours through PDL, and a top-k launch
// become one PDL kernel).
#include <cmath>

#include "common.cuh"
#include "moetron/core/error.hpp"

namespace moetron {
namespace kernels {
namespace {

constexpr int kPerLane = kRouterMaxExperts / 32;
constexpr int kWarpsPerBlock = 4;

// One warp, one token: softmax of the logits `load(e)` of experts e < num_experts, its top-k
// into ids_row / weights_row in descending order (ties: the lower expert), renormalised to
// sum 1 if asked.
template <typename Load>
__device__ void softmax_topk_warp(Load load, int num_experts, int k, bool renormalize,
                                  int32_t* __restrict__ ids_row, float* __restrict__ weights_row) {
  const int lane = threadIdx.x & 31;
  float prob[kPerLane];
  float row_max = -INFINITY;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    prob[i] = e < num_experts ? load(e) : -INFINITY;
    row_max = fmaxf(row_max, prob[i]);
  }
  row_max = warp_max(row_max);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    prob[i] = e < num_experts ? expf(prob[i] - row_max) : 0.0f;
    sum += prob[i];
  }
  const float inv_sum = 1.0f / warp_sum(sum);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    // Padding lanes get -1 so that they are never picked, even over zero probabilities.
    prob[i] = lane + 32 * i < num_experts ? prob[i] * inv_sum : -1.0f;
  }

  // k rounds of a warp-wide argmax; the winner drops out of the next rounds.
  float picked_sum = 0.0f;
  float my_weight = 0.0f;  // lane j keeps pick j (k <= 32 here; larger k reads back below)
  for (int j = 0; j < k; ++j) {
    float best = -2.0f;
    int best_e = 0x7fffffff;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) argmax_merge(best, best_e, prob[i], lane + 32 * i);
    warp_argmax(best, best_e);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i)
      if (lane + 32 * i == best_e) prob[i] = -1.0f;
    picked_sum += best;
    if (j < 32 && lane == j) my_weight = best;
    if (lane == 0) ids_row[j] = best_e;
    if (j >= 32 && lane == 0) weights_row[j] = best;
  }
  __syncwarp();  // lane 0's stores of picks past 32 are read by other lanes
  const float scale = renormalize ? 1.0f / picked_sum : 1.0f;
  for (int j = lane; j < k; j += 32) {
    const float w = j < 32 ? my_weight : weights_row[j];
    weights_row[j] = w * scale;
  }
}

template <typename T>
__global__ void router_topk_kernel(const T* __restrict__ logits, int64_t num_tokens,
                                   int num_experts, int k, bool renormalize,
                                   int32_t* __restrict__ ids, float* __restrict__ weights) {
  pdl_enter();  // first: see common.cuh
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (t >= num_tokens) return;
  const T* row = logits + t * num_experts;
  softmax_topk_warp([row](int e) { return as_float(row[e]); }, num_experts, k, renormalize,
                    ids + t * k, weights + t * k);
}

// Warp w of the grid: expert w's logit for every token (x [tokens, hidden] . w_e, fp32, plus
// bias[e]), into logits [tokens, E]. Then the last block to arrive (a counter that it resets
// for the next launch) runs the top-k of every token over them, a warp a token.
template <int kTokens>
__global__ void router_fused_kernel(const bf16* __restrict__ x, int tokens, int hidden,
                                    const bf16* __restrict__ w, int num_experts,
                                    const float* __restrict__ bias, int k, bool renormalize,
                                    float* logits, int32_t* __restrict__ ids,
                                    float* __restrict__ weights, unsigned* arrivals) {
  pdl_enter();  // first: see common.cuh
  const int lane = threadIdx.x & 31;
  const int e = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (e < num_experts) {
    const bf16* row = w + static_cast<int64_t>(e) * hidden;
    float acc[kTokens] = {};
#pragma unroll 4
    for (int c = lane * 8; c < hidden; c += 32 * 8) {
      float wf[8];
      load_bf16<8>(row + c, wf);
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        if (t >= tokens) break;
        float xf[8];
        load_bf16<8>(x + static_cast<int64_t>(t) * hidden + c, xf);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[t] = fmaf(wf[i], xf[i], acc[t]);
      }
    }
    const float b = bias ? bias[e] : 0.0f;
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      if (t >= tokens) break;
      const float v = warp_sum(acc[t]);
      if (lane == 0) logits[static_cast<int64_t>(t) * num_experts + e] = v + b;
    }
  }
  // The classic last-block pattern: each block publishes its logits (fence), counts itself in,
  // and the one that completes the count sees every block's logits after its own fence.
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(arrivals, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int warp = threadIdx.x >> 5;
  for (int t = warp; t < tokens; t += kWarpsPerBlock) {
    const float* row = logits + static_cast<int64_t>(t) * num_experts;
    // __ldcg: from L2, where the other blocks' stores are; not a stale L1 line.
    softmax_topk_warp([row](int i) { return __ldcg(row + i); }, num_experts, k, renormalize,
                      ids + t * k, weights + t * k);
  }
  if (threadIdx.x == 0) *arrivals = 0u;  // ready for the next launch (stream order)
}

}  // namespace

void router_topk(const void* logits, bool logits_bf16, int64_t num_tokens, int64_t num_experts,
                 int64_t k, bool renormalize, int32_t* ids, float* weights, cudaStream_t stream) {
  if (num_tokens == 0) return;
  const unsigned blocks = static_cast<unsigned>(ceil_div(num_tokens, kWarpsPerBlock));
  const int threads = 32 * kWarpsPerBlock;
  if (logits_bf16)
    launch(router_topk_kernel<bf16>, blocks, threads, 0, stream, static_cast<const bf16*>(logits),
        num_tokens, static_cast<int>(num_experts), static_cast<int>(k), renormalize, ids, weights);
  else
    launch(router_topk_kernel<float>, blocks, threads, 0, stream, static_cast<const float*>(logits),
        num_tokens, static_cast<int>(num_experts), static_cast<int>(k), renormalize, ids, weights);
}

bool router_fused_supported(int64_t num_tokens, int64_t hidden, int64_t num_experts,
                            const void* x, const void* w) {
  return num_tokens >= 1 && num_tokens <= kRouterFusedMaxTokens && hidden % 8 == 0 &&
         num_experts <= kRouterMaxExperts && aligned16(x) && aligned16(w);
}

void router_fused(const bf16* x, int64_t num_tokens, int64_t hidden, const bf16* w,
                  int64_t num_experts, const float* bias, int64_t k, bool renormalize,
                  float* logits, int32_t* ids, float* weights, unsigned* arrivals,
                  cudaStream_t stream) {
  MOETRON_ASSERT(router_fused_supported(num_tokens, hidden, num_experts, x, w));
  const unsigned blocks = static_cast<unsigned>(ceil_div(num_experts, kWarpsPerBlock));
  launch(router_fused_kernel<kRouterFusedMaxTokens>, blocks, 32 * kWarpsPerBlock, 0, stream, x,
         static_cast<int>(num_tokens), static_cast<int>(hidden), w, static_cast<int>(num_experts),
         bias, static_cast<int>(k), renormalize, logits, ids, weights, arrivals);
}

}  // namespace kernels
}  // namespace moetron
