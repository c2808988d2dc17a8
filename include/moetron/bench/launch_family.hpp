// The families of ops whose host cost of one launch the bench measures apart (profile table
// launch_cost) and the predictor's eager launch pipeline prices (CostModel::launch_s): an eager
// step whose host cannot keep its device busy is paced by what each op costs the host, which
// differs between a one-kernel norm and a cuBLAS GEMM or an expert call of several kernels.
#pragma once
#include <cstdint>

namespace moetron {

enum class LaunchFamily : int64_t {
  kMemory = 0,     // one memory-bound kernel (norms, element-wise, routing, gathers)
  kGemm = 1,       // one dense GEMM (cuBLAS)
  kExperts = 2,    // one moe_experts call (routing, the grouped GEMMs, the combine)
  kAttention = 3,  // one paged attention call
  kCopy = 4,       // one Ops::copy (an emulated rank's stand-ins)
};
constexpr int64_t kLaunchFamilies = 5;

}  // namespace moetron
