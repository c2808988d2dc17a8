#include "moetron/predict/memory_estimate.hpp"

namespace moetron {

RankMemoryNeed estimate_rank_memory(const ModelConfig& c, const Plan& plan, const ShardSpec& s,
                                    const RankMemoryInputs& in) {
  RunShape run;
  run.kv_tokens = in.kv_tokens;
  run.block_size = in.block_size;
  run.max_step_tokens = in.max_step_tokens;
  run.max_batch = in.max_seqs;
  const MemoryNeed need = memory_need(c, plan, s, in.storage, run);
  RankMemoryNeed out;
  out.weights = need.weights;
  out.activations = need.activations;
  out.kv_cache = need.kv_cache;
  out.kv_per_token =
      kv_bytes_per_token(s.layer_end - s.layer_begin, s.kv_head_count, c.head_dim, in.storage.activations);
  return out;
}

}  // namespace moetron
