#include "moetron/predict/memory_estimate.hpp"

#include <algorithm>

namespace moetron {

// Until parallel/memory_need lands: weights exactly as the loader uploads them, the KV cache as
// the engine lays it out (bf16 K and V for each local layer and kv head), and the temporaries of
// one layer's forward over the step's tokens in bf16 (hidden state, q/k/v/o, router, each top-k
// row's input, gate/up and output, dense or shared MLP), the last stage's logits (bf16, float32
// and the tp gather) and, with several replicas, the expert dispatch's send and receive rows.
RankMemoryNeed estimate_rank_memory(const ModelConfig& c, const Plan& plan, const ShardSpec& s,
                                    const RankMemoryInputs& in) {
  constexpr int64_t bf16 = 2, f32 = 4;
  const int64_t H = c.hidden_size, k = std::max<int64_t>(c.top_k, 1);
  const int64_t q = s.q_head_count * c.head_dim, kv = s.kv_head_count * c.head_dim;
  const int64_t expert_cols = std::max<int64_t>(s.expert_col_count, 1);
  RankMemoryNeed need;
  need.weights = weight_shard_bytes(c, s);
  need.kv_per_token = (s.layer_end - s.layer_begin) * 2 * kv * bf16;
  need.kv_cache = need.kv_per_token * in.kv_tokens;

  const int64_t layer_per_token = bf16 * (3 * H + 2 * q + 2 * kv + k * (2 * H + 3 * expert_cols) +
                                          3 * std::max(s.shared_col_count, s.mlp_col_count)) +
                                  f32 * (c.num_experts + 2 * k);
  int64_t logits = 0;
  if (s.last_stage)
    logits = in.max_seqs * (s.vocab_rows * (bf16 + f32) + plan.tp * s.vocab_rows * f32 + c.vocab_size * f32);
  int64_t dispatch = 0;
  if (plan.dp > 1) {
    // Rows a rank sends or receives: a decode step's fixed capacity (forward.cpp), or in prefill
    // its share of the entries and, under uniform routing, every replica's rows for its set.
    const int64_t share = (in.max_step_tokens + plan.tp - 1) / plan.tp;
    const int64_t decode = plan.stage_size() * ((in.max_seqs + plan.tp - 1) / plan.tp) *
                           std::min(k, std::max<int64_t>(c.num_experts / plan.ep, 1));
    const int64_t prefill = std::max(share * k * plan.expert_shards(), plan.dp * in.max_step_tokens * k / plan.ep);
    dispatch = std::max(decode, prefill) * bf16 * (4 * H + 2 * expert_cols);
  }
  need.activations = in.max_step_tokens * layer_per_token + logits + dispatch;
  return need;
}

}  // namespace moetron
