// What one rank of a plan needs in memory, in the predictor's terms: the breakdown of
// parallel/memory_need (the same formula the plan check and the engine's arena use), plus the
// KV bytes per token the predictor needs to size batches.
#pragma once
#include <cstdint>

#include "moetron/model/config.hpp"
#include "moetron/parallel/memory_need.hpp"
#include "moetron/model/weights.hpp"  // ShardSpec
#include "moetron/parallel/plan.hpp"

namespace moetron {

struct RankMemoryInputs {
  int64_t max_step_tokens = 8192;  // most tokens in one forward (the engine's max(--max-batch-tokens, longest prompt))
  int64_t max_seqs = 256;          // most sequences in one step (--max-batch)
  int64_t kv_tokens = 0;           // KV-cache tokens this rank's replica keeps
  int64_t block_size = 16;         // KV-cache block (--block-size)
  BackendStorage storage;          // bf16 on cuda (the default), float32 on the cpu
};

struct RankMemoryNeed {
  int64_t weights = 0;      // the shard's weights at the backend's width
  int64_t activations = 0;  // one step's temporaries, logits and expert dispatch buffers
  int64_t kv_per_token = 0; // K and V bytes one token takes on this rank (its layers, its kv heads)
  int64_t kv_cache = 0;     // kv_per_token * kv_tokens
  int64_t total() const { return weights + activations + kv_cache; }
};

RankMemoryNeed estimate_rank_memory(const ModelConfig& config, const Plan& plan, const ShardSpec& shard,
                                    const RankMemoryInputs& inputs);

}  // namespace moetron
