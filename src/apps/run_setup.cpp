#include "run_setup.hpp"

#include <algorithm>

namespace moetron::apps {

ShardSpec shard_from_layout(const ShardLayout& l, const ModelConfig& c, const Plan& plan) {
  ShardSpec s;
  s.layer_begin = l.layers.begin;
  s.layer_end = l.layers.end;
  s.q_head_begin = l.q_heads.begin;
  s.q_head_count = l.q_heads.size();
  s.kv_head_begin = l.kv_heads.begin;
  s.kv_head_count = l.kv_heads.size();
  s.kv_replication = l.kv_replicated ? plan.tp / c.num_kv_heads : 1;
  s.mlp_col_begin = l.dense_columns.begin;
  s.mlp_col_count = l.dense_columns.size();
  s.shared_col_begin = l.shared_expert_columns.begin;
  s.shared_col_count = l.shared_expert_columns.size();
  s.expert_begin = l.experts.begin;
  s.expert_count = l.experts.size();
  s.expert_col_begin = l.expert_columns.begin;
  s.expert_col_count = l.expert_columns.size();
  s.vocab_begin = l.vocab.begin;
  s.vocab_count = l.vocab.size();
  s.first_stage = l.first_stage;
  s.last_stage = l.last_stage;
  s.holds_o_bias = l.coords.tp == 0;
  return s;
}

// Device memory for one step's temporaries (CudaOps reserves it once): the largest layer's
// scratch for max_tokens tokens (attention, router, the permuted expert rows and their
// intermediate activations, the shared expert) plus the logits of max_seqs rows, with slack.
// With several replicas, a decode step's fixed-capacity expert dispatch of max_seqs tokens
// (ModelForward::dispatch_capacity) sends, receives and runs experts on padded entries too.
size_t step_arena_bytes(const ModelConfig& c, const ShardSpec& s, const Plan& plan,
                        int64_t max_tokens, int64_t max_seqs) {
  const int64_t hd = c.head_dim, k = std::max<int64_t>(c.top_k, 1);
  const int64_t q = s.q_head_count * hd, kv = s.kv_head_count * hd;
  const int64_t per_token_elems =
      4 * c.hidden_size + 3 * q + 3 * kv + c.num_experts + 4 * k +
      k * (2 * c.hidden_size + 3 * std::max(s.expert_col_count, int64_t{1})) +
      3 * std::max(s.shared_col_count, s.mlp_col_count) + c.hidden_size;
  const int64_t logits_bytes = max_seqs * (c.hidden_size * 4 + s.vocab_count * 10 + c.vocab_size * 4);
  int64_t dispatch_bytes = 0;
  if (plan.dp > 1) {
    const int64_t entries = static_cast<int64_t>(plan.tp) * plan.dp * ((max_seqs + plan.tp - 1) / plan.tp) *
                            std::min<int64_t>(k, c.num_experts / plan.ep);
    // send, received, expert output and returned rows, the permuted copies, ids and weights
    dispatch_bytes = entries * ((6 * c.hidden_size + 2 * std::max(s.expert_col_count, int64_t{1})) * 2 + 32);
  }
  const double bytes =
      static_cast<double>(max_tokens * per_token_elems * 2 + logits_bytes + dispatch_bytes) * 1.25;
  return static_cast<size_t>(bytes) + (64u << 20);
}

}  // namespace moetron::apps
