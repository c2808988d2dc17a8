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

// ids and weights are [*, k] row-major on the host; returns `destinations` entries.
std::vector<DispatchEntries> entries_by_destination(const int32_t* ids, const float* weights,
                                                    int64_t k, int64_t first, int64_t last,
                                                    int64_t expert_set_size,
                                                    int64_t expert_shards, int64_t destinations);

}  // namespace moetron
