// The one place that knows each family's Hugging Face tensor names and shapes.
//
// The loader asks `WeightNames` for a tensor (`names.q_proj(layer)`, `names.expert_gate(layer, e)`)
// and gets its name and expected shape together, so it can `ckpt.get_checked(spec)` without
// restating any shape. `expected_tensors` lists every tensor a checkpoint must hold: the random
// checkpoint writer writes exactly that list and `check_checkpoint` verifies it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/model/config.hpp"
#include "moetron/model/safetensors.hpp"

namespace moetron {

// What a tensor is, which decides how random checkpoints initialise it.
enum class WeightKind {
  Embedding,  // token embedding table
  Norm,       // RMSNorm weights (including QK-norm)
  Linear,     // projection weights [out, in]
  Gate,       // the router and the shared-expert gate [out, hidden]
  Bias,       // projection biases
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  WeightKind kind = WeightKind::Linear;
};

class WeightNames {
 public:
  explicit WeightNames(const ModelConfig& config);

  TensorSpec embed() const;
  TensorSpec final_norm() const;
  TensorSpec lm_head() const;  // Error when the embeddings are tied (there is none to load)

  TensorSpec input_norm(int64_t layer) const;
  TensorSpec post_attention_norm(int64_t layer) const;

  TensorSpec q_proj(int64_t layer) const;  // [q_width, hidden]
  TensorSpec k_proj(int64_t layer) const;  // [kv_width, hidden]
  TensorSpec v_proj(int64_t layer) const;  // [kv_width, hidden]
  TensorSpec o_proj(int64_t layer) const;  // [hidden, q_width]
  TensorSpec q_bias(int64_t layer) const;  // when config.qkv_bias
  TensorSpec k_bias(int64_t layer) const;
  TensorSpec v_bias(int64_t layer) const;
  TensorSpec o_bias(int64_t layer) const;  // when config.o_bias
  TensorSpec q_norm(int64_t layer) const;  // when config.qk_norm != None: OLMoE [q_width], Qwen3 [head_dim]
  TensorSpec k_norm(int64_t layer) const;  // OLMoE [kv_width], Qwen3 [head_dim]

  // MoE layers.
  TensorSpec router(int64_t layer) const;                // [experts, hidden]
  TensorSpec expert_gate(int64_t layer, int64_t e) const;  // [moe_width, hidden] (mixtral w1)
  TensorSpec expert_up(int64_t layer, int64_t e) const;    // [moe_width, hidden] (mixtral w3)
  TensorSpec expert_down(int64_t layer, int64_t e) const;  // [hidden, moe_width] (mixtral w2)
  TensorSpec shared_expert_gate_proj(int64_t layer) const;  // qwen2_moe: [shared_width, hidden]
  TensorSpec shared_expert_up(int64_t layer) const;
  TensorSpec shared_expert_down(int64_t layer) const;    // [hidden, shared_width]
  TensorSpec shared_expert_gate(int64_t layer) const;    // the sigmoid gate, [1, hidden]

  // Dense (non-MoE) layers.
  TensorSpec dense_gate(int64_t layer) const;  // [intermediate, hidden]
  TensorSpec dense_up(int64_t layer) const;
  TensorSpec dense_down(int64_t layer) const;  // [hidden, intermediate]

  // Every tensor of one layer / of the whole model, in the order HF's modules declare them.
  std::vector<TensorSpec> layer_tensors(int64_t layer) const;
  std::vector<TensorSpec> all_tensors() const;

 private:
  std::string layer_prefix(int64_t layer) const;  // "model.layers.{i}."
  std::string mlp_prefix(int64_t layer) const;    // "...mlp." or "...block_sparse_moe."
  void check_layer(int64_t layer) const;
  void check_expert(int64_t layer, int64_t e) const;
  void check_dense(int64_t layer) const;
  TensorSpec swiglu_matrix(const std::string& prefix, const std::string& which, int64_t width) const;
  TensorSpec expert_matrix(int64_t layer, int64_t e, const char* name, const char* mixtral_name,
                           std::vector<int64_t> shape) const;

  ModelConfig c_;
};

inline std::vector<TensorSpec> expected_tensors(const ModelConfig& config) {
  return WeightNames(config).all_tensors();
}

// Throws Error naming the first expected tensor that is missing, mis-shaped or not a
// floating-point dtype. Tensors the model does not use are allowed.
void check_checkpoint(const Checkpoint& ckpt, const ModelConfig& config);

// get_checked with the spec's name and shape.
inline TensorView get_checked(const Checkpoint& ckpt, const TensorSpec& spec) {
  return ckpt.get_checked(spec.name, spec.shape);
}

}  // namespace moetron
