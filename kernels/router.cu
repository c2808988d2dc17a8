// MoE router: softmax over the expert logits, top-k and renormalisation in one kernel, one warp
// per token (each lane holds up to 8 of at most 256 experts in registers).
#include <cmath>

#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

constexpr int kPerLane = kRouterMaxExperts / 32;
constexpr int kWarpsPerBlock = 4;

template <typename T>
__global__ void router_topk_kernel(const T* __restrict__ logits, int64_t num_tokens,
                                   int num_experts, int k, bool renormalize,
                                   const int32_t* __restrict__ valid_tokens,
                                   int32_t* __restrict__ ids, float* __restrict__ weights) {
  pdl_enter();  // first: see common.cuh
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (t >= num_tokens) return;
  const int lane = threadIdx.x & 31;
  if (valid_tokens != nullptr && t >= *valid_tokens) {  // padding: routed to no expert
    for (int j = lane; j < k; j += 32) ids[t * k + j] = -1, weights[t * k + j] = 0.0f;
    return;
  }
  const T* row = logits + t * num_experts;

  float prob[kPerLane];
  float row_max = -INFINITY;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    prob[i] = e < num_experts ? as_float(row[e]) : -INFINITY;
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
    if (lane == 0) ids[t * k + j] = best_e;
    if (j >= 32 && lane == 0) weights[t * k + j] = best;
  }
  __syncwarp();  // lane 0's stores of picks past 32 are read by other lanes
  const float scale = renormalize ? 1.0f / picked_sum : 1.0f;
  for (int j = lane; j < k; j += 32) {
    const float w = j < 32 ? my_weight : weights[t * k + j];
    weights[t * k + j] = w * scale;
  }
}

}  // namespace

void router_topk(const void* logits, bool logits_bf16, int64_t num_tokens, int64_t num_experts,
                 int64_t k, bool renormalize, const int32_t* valid_tokens, int32_t* ids, float* weights,
                 cudaStream_t stream) {
  if (num_tokens == 0) return;
  const unsigned blocks = static_cast<unsigned>(ceil_div(num_tokens, kWarpsPerBlock));
  const int threads = 32 * kWarpsPerBlock;
  if (logits_bf16)
    launch(router_topk_kernel<bf16>, blocks, threads, 0, stream, static_cast<const bf16*>(logits),
        num_tokens, static_cast<int>(num_experts), static_cast<int>(k), renormalize, valid_tokens, ids, weights);
  else
    launch(router_topk_kernel<float>, blocks, threads, 0, stream, static_cast<const float*>(logits),
        num_tokens, static_cast<int>(num_experts), static_cast<int>(k), renormalize, valid_tokens, ids, weights);
}

}  // namespace kernels
}  // namespace moetron
