#include "moetron/backend/expert_dispatch.hpp"

#include "moetron/core/error.hpp"

namespace moetron {

std::vector<DispatchEntries> entries_by_destination(const int32_t* ids, const float* weights,
                                                    int64_t k, int64_t first, int64_t last,
                                                    int64_t expert_set_size,
                                                    int64_t expert_shards, int64_t destinations) {
  MOETRON_ASSERT(expert_set_size > 0 && expert_shards > 0 && 0 <= first && first <= last);
  std::vector<DispatchEntries> out(static_cast<size_t>(destinations));
  for (int64_t slot = first * k; slot < last * k; ++slot) {
    const int32_t e = ids[slot];
    if (e < 0) continue;  // padding (a recorded step's rows past its real tokens): sent nowhere
    for (int64_t shard = 0; shard < expert_shards; ++shard) {
      const int64_t d = (e / expert_set_size) * expert_shards + shard;
      MOETRON_ASSERT(d < destinations);
      DispatchEntries& to = out[static_cast<size_t>(d)];
      to.rows.push_back(static_cast<int32_t>(slot / k));
      to.experts.push_back(e);
      to.scales.push_back(weights[slot]);
    }
  }
  return out;
}

void route_to_replicas_host(const int32_t* ids, int64_t tokens, int64_t k, const int32_t* table,
                            int64_t experts, int64_t cols, int32_t* out) {
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = ids[t * k + j];
      if (e < 0 || e >= experts) {
        out[t * k + j] = -1;
        continue;
      }
      const int32_t* row = table + static_cast<int64_t>(e) * cols;
      out[t * k + j] = row[1 + t % row[0]];
    }
}

}  // namespace moetron
