// Limits the CUDA kernels are built around that host code without CUDA also needs (the
// predictor counts the launches a step makes). Plain C++: CPU-only builds include it.
#pragma once

namespace moetron {

// Up to this many tokens, the router's logits and top-k are one kernel (router_fused); more
// take a cuBLAS GEMM and router_topk.
constexpr int kRouterFusedMaxTokens = 8;

}  // namespace moetron
