// Redundant experts: each routed slot to one copy of its expert (Ops::route_to_replicas; the
// host rule, the CPU reference, is route_to_replicas_host in backend/expert_dispatch.hpp).
#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

// One thread per slot (t, j): copy t % n_e of expert e, from table row e = (n_e, slot ids...).
__global__ void route_to_replicas_kernel(const int32_t* __restrict__ ids, int64_t tokens, int64_t k,
                                         const int32_t* __restrict__ table, int64_t experts,
                                         int64_t cols, int32_t* __restrict__ out) {
  pdl_enter();  // first: see common.cuh
  const int64_t n = tokens * k;
  for (int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; s < n;
       s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t e = ids[s];
    if (e < 0 || e >= experts) {
      out[s] = -1;
      continue;
    }
    const int32_t* row = table + static_cast<int64_t>(e) * cols;
    out[s] = row[1 + (s / k) % row[0]];
  }
}

}  // namespace

void route_to_replicas(const int32_t* ids, int64_t tokens, int64_t k, const int32_t* table,
                       int64_t experts, int64_t cols, int32_t* out, cudaStream_t stream) {
  const int64_t n = tokens * k;
  if (n == 0) return;
  launch(route_to_replicas_kernel, grid_for(n, 256), 256, 0, stream, ids, tokens, k, table, experts, cols, out);
}

}  // namespace kernels
}  // namespace moetron
