// What one rank of a plan needs in device memory. This is the predictor's ONE memory function:
// when the per-rank memory model of parallel/memory_need lands (branch memfit), this function's
// body becomes a call to it and nothing else in predict/ changes.
#pragma once
#include <cstdint>

#include "moetron/model/config.hpp"
#include "moetron/model/weights.hpp"  // ShardSpec
#include "moetron/parallel/plan.hpp"

namespace moetron {

struct RankMemoryInputs {
  int64_t max_step_tokens = 8192;  // most tokens in one forward (the engine's max(--max-batch-tokens, longest prompt))
  int64_t max_seqs = 256;          // most sequences in one step (--max-batch)
  int64_t kv_tokens = 0;           // KV-cache tokens this rank's replica keeps
};

struct RankMemoryNeed {
  int64_t weights = 0;      // the shard's bf16 weights (weight_shard_bytes)
  int64_t activations = 0;  // one step's temporaries, logits and expert dispatch buffers
  int64_t kv_per_token = 0; // K and V bytes one token takes on this rank (its layers, its kv heads)
  int64_t kv_cache = 0;     // kv_per_token * kv_tokens
  int64_t total() const { return weights + activations + kv_cache; }
};

RankMemoryNeed estimate_rank_memory(const ModelConfig& config, const Plan& plan, const ShardSpec& shard,
                                    const RankMemoryInputs& inputs);

}  // namespace moetron
