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

// The CUDA expert kernels load 8 bf16 at a time: hidden and a rank's expert columns must be
// multiples of this (CudaOps::do_moe_experts refuses others at run time).
constexpr int64_t kCudaExpertWidthMultiple = 8;

}  // namespace moetron
