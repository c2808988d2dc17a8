// The CUDA expert call's kernel paths and shape limits, in one place for the code that must agree
// with kernels/grouped_gemm.cu without CUDA: the bench (which side of the switch it times), the
// cost model (which measured points it interpolates between) and the predictor's plan check.
#pragma once
#include <cstdint>

namespace moetron {

// A moe_experts call of at most this many tokens runs per-expert GEMVs on CUDA cores; more tokens
// run tensor-core tiles (kernels::grouped_gemm_tile_rows; kernels::kGemvMaxRows is this value).
constexpr int64_t kExpertGemvMaxTokens = 8;
inline bool expert_call_is_gemv(int64_t call_tokens) { return call_tokens <= kExpertGemvMaxTokens; }

// Prefill-sized calls run one cuBLAS GEMM per expert instead of the tiles (CudaOps::do_moe_experts,
// MOETRON_EXPERT_GEMM=cublas, the default): when the call takes the largest row tiles (at least
// 2 x 128 rows per local expert on average: kernels::grouped_gemm_tile_rows), its rows are copied
// into expert order (more than kExpertRouteOneBlockMaxSlots slots, or more local experts than
// one routing block's threads: kernels::moe_route), and the stream is not being captured (the
// call syncs with the host). Each expert's rows are rounded up to kExpertGemmBucketRows.
constexpr int64_t kExpertGemmBucketRows = 256;
constexpr int64_t kExpertLargeTileRows = 128;
constexpr int64_t kExpertRouteOneBlockMaxSlots = 8192;
constexpr int64_t kExpertRouteOneBlockMaxExperts = 1024;
inline bool expert_call_by_gemms(int64_t call_tokens, int64_t slots_per_token, int64_t local_experts, bool eager) {
  if (!eager || local_experts <= 0 || expert_call_is_gemv(call_tokens)) return false;
  const int64_t slots = call_tokens * slots_per_token;
  const bool rows_resolved = local_experts <= kExpertRouteOneBlockMaxExperts && slots <= kExpertRouteOneBlockMaxSlots;
  return !rows_resolved && slots / local_experts >= 2 * kExpertLargeTileRows;
}

// The CUDA expert kernels load 8 bf16 at a time: hidden and a rank's expert columns must be
// multiples of this (CudaOps::do_moe_experts refuses others at run time).
constexpr int64_t kCudaExpertWidthMultiple = 8;

}  // namespace moetron
