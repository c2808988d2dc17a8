// Small hand-sized MoE configs for the plan, memory and predictor tests: every layer MoE, the
// dense width equal to the experts' width.
#pragma once
#include <cstdint>

#include "moetron/model/config.hpp"

namespace moetron {

struct MoeSizes {
  int64_t vocab, hidden, layers, heads, kv_heads, head_dim, expert_width, experts, top_k;
};

inline ModelConfig moe_config(const MoeSizes& s) {
  ModelConfig c;
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.num_layers = s.layers;
  c.num_heads = s.heads;
  c.num_kv_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.intermediate_size = s.expert_width;
  c.moe_intermediate_size = s.expert_width;
  c.num_experts = s.experts;
  c.top_k = s.top_k;
  c.layer_is_moe.assign(static_cast<size_t>(s.layers), true);
  return c;
}

}  // namespace moetron
