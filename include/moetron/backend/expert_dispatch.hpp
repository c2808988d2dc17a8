// The expert-dispatch rule, on the host, shared by the forward's count-exchanging dispatch and
// the host default of Ops::pack_dispatch (the CUDA kernel in kernels/moe_permute.cu follows it
// too): slot (t, j) of the tokens t in [first, last) goes, in (t, j) order, to every destination
// (ids[t, j] / expert_set_size) * expert_shards + shard, shard < expert_shards.
#pragma once
#include <cstdint>
#include <vector>

namespace moetron {

// What one destination receives, in order.
struct DispatchEntries {
  std::vector<int32_t> rows;     // token rows
  std::vector<int32_t> experts;  // global expert ids
  std::vector<float> scales;     // routing weights
};

// ids and weights are [*, k] row-major on the host; returns `destinations` entries. Ids below 0
// (a recorded step's padding rows: Ops::router_topk) go nowhere, as on the device.
std::vector<DispatchEntries> entries_by_destination(const int32_t* ids, const float* weights,
                                                    int64_t k, int64_t first, int64_t last,
                                                    int64_t expert_set_size,
                                                    int64_t expert_shards, int64_t destinations);

// The redundant-expert rule of Ops::route_to_replicas on the host (the CUDA kernel in
// kernels/expert_replicas.cu follows it): slot (t, j) of expert e = ids[t, j] becomes copy
// t % n_e of e, where table row e (`cols` wide) is n_e and then the copies' slot ids; -1 for an
// id outside [0, experts).
void route_to_replicas_host(const int32_t* ids, int64_t tokens, int64_t k, const int32_t* table,
                            int64_t experts, int64_t cols, int32_t* out);

}  // namespace moetron
