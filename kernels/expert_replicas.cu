// Redundant experts: each routed slot to one copy of its expert (Ops::route_to_replicas; the
// host rule, the CPU reference, is route_to_replicas_host in backend/expert_dispatch.hpp), and
// rank emulation's packing of every peer's copies at once (Ops::pack_from_peers).
#include "dispatch.cuh"

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
       s += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[s] = replica_slot(table, experts, cols, ids[s], s / k);
}

// One warp per peer: its table and tp rank from senders, then pack_dispatch's packing of its
// share of the tokens for the one destination, routing each slot to its copy on the fly.
__global__ void pack_from_peers_kernel(const int32_t* __restrict__ ids, int64_t tokens, int64_t k,
                                       const int32_t* __restrict__ tables, int64_t experts, int64_t cols,
                                       const int32_t* __restrict__ senders, int64_t peers, int64_t tp_size,
                                       int64_t set_size, int64_t set, int64_t capacity, int32_t* rows,
                                       int32_t* out_experts) {
  pdl_enter();  // first: see common.cuh
  const int64_t p = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  if (p >= peers) return;  // warp-uniform: blocks hold whole warps
  const int32_t* table = tables + static_cast<int64_t>(senders[2 * p]) * experts * cols;
  const int64_t tp_rank = senders[2 * p + 1], base = p * capacity;
  const auto id_of = [=](int64_t s) { return replica_slot(table, experts, cols, ids[s], s / k); };
  warp_pack<false>(tokens * tp_rank / tp_size * k, tokens * (tp_rank + 1) / tp_size * k, k, id_of, set, set_size, capacity,
            nullptr, rows + base, out_experts + base, nullptr);
}

}  // namespace

void route_to_replicas(const int32_t* ids, int64_t tokens, int64_t k, const int32_t* table,
                       int64_t experts, int64_t cols, int32_t* out, cudaStream_t stream) {
  const int64_t n = tokens * k;
  if (n == 0) return;
  launch(route_to_replicas_kernel, grid_for(n, 256), 256, 0, stream, ids, tokens, k, table, experts, cols, out);
}

void pack_from_peers(const int32_t* ids, int64_t tokens, int64_t k, const int32_t* tables, int64_t experts,
                     int64_t cols, const int32_t* senders, int64_t peers, int64_t tp_size, int64_t set_size,
                     int64_t set, int64_t capacity, int32_t* rows, int32_t* out_experts, cudaStream_t stream) {
  if (peers == 0 || capacity == 0) return;
  constexpr int kThreads = 256;  // 8 warps, one peer each
  launch(pack_from_peers_kernel, ceil_div(peers * 32, static_cast<int64_t>(kThreads)), kThreads, 0, stream, ids,
         tokens, k, tables, experts, cols, senders, peers, tp_size, set_size, set, capacity, rows, out_experts);
}

}  // namespace kernels
}  // namespace moetron
