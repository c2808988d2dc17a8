// Device pieces of the expert dispatch rules (backend/expert_dispatch.hpp), shared by the
// kernels that route to copies (expert_replicas.cu) and pack by destination (moe_permute.cu).
#pragma once
#include "common.cuh"

namespace moetron {
namespace kernels {

// route_to_replicas_host's rule: token t's slot of expert e goes to copy t % n_e, table row e
// (`cols` wide) being n_e and then the copies' slot ids; -1 for an id outside [0, experts).
__device__ __forceinline__ int32_t replica_slot(const int32_t* __restrict__ table, int64_t experts, int64_t cols,
                                                int32_t e, int64_t t) {
  if (e < 0 || e >= experts) return -1;
  const int32_t* row = table + static_cast<int64_t>(e) * cols;
  return row[1 + t % row[0]];
}

// One warp packs one destination (pack_dispatch's rule): it walks the slots [begin, end) of
// [*, k] ids 32 at a time, in order, and a ballot gives each slot whose id (id_of(s); -1 for
// none) lies in expert set `set` its place. `capacity` entries of rows (token row) and experts
// (the id), and with kScales of scales (weights[s]); -1, -1, 0 past the count. The order is
// the host's, with no atomics (the combine is deterministic). All 32 lanes call it.
template <bool kScales, class IdOf>
__device__ __forceinline__ void warp_pack(int64_t begin, int64_t end, int64_t k, IdOf id_of, int64_t set,
                                          int64_t set_size, int64_t capacity, const float* __restrict__ weights,
                                          int32_t* rows, int32_t* experts, float* scales) {
  const unsigned lane = threadIdx.x & 31u;
  int64_t filled = 0;
  for (int64_t s0 = begin; s0 < end; s0 += 32) {
    const int64_t s = s0 + lane;
    const int32_t e = s < end ? id_of(s) : -1;
    const bool mine = e >= 0 && e / set_size == set;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    const int64_t at = filled + __popc(ballot & ((1u << lane) - 1u));
    if (mine && at < capacity) {
      rows[at] = static_cast<int32_t>(s / k);
      experts[at] = e;
      if constexpr (kScales) scales[at] = weights[s];
    }
    filled += __popc(ballot);
  }
  for (int64_t i = filled + lane; i < capacity; i += 32) {
    rows[i] = -1;
    experts[i] = -1;
    if constexpr (kScales) scales[i] = 0.0f;
  }
}

}  // namespace kernels
}  // namespace moetron
