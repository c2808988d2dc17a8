#include "moetron/model/weight_names.hpp"

#include "moetron/core/error.hpp"

namespace moetron {

WeightNames::WeightNames(const ModelConfig& config) : c_(config) {}

std::string WeightNames::layer_prefix(int64_t layer) const {
  check_layer(layer);
  return "model.layers." + std::to_string(layer) + ".";
}

std::string WeightNames::mlp_prefix(int64_t layer) const {
  return layer_prefix(layer) + (c_.family == Family::Mixtral ? "block_sparse_moe." : "mlp.");
}

void WeightNames::check_layer(int64_t layer) const {
  MOETRON_CHECK(layer >= 0 && layer < c_.num_layers,
                "layer " << layer << " is outside the model's " << c_.num_layers << " layers");
}

void WeightNames::check_expert(int64_t layer, int64_t e) const {
  check_layer(layer);
  MOETRON_CHECK(c_.layer_is_moe[layer], "layer " << layer << " is dense: it has no experts");
  MOETRON_CHECK(e >= 0 && e < c_.num_experts, "expert " << e << " is outside the " << c_.num_experts << " experts");
}

TensorSpec WeightNames::embed() const {
  return {"model.embed_tokens.weight", {c_.vocab_size, c_.hidden_size}, WeightKind::Embedding};
}
TensorSpec WeightNames::final_norm() const { return {"model.norm.weight", {c_.hidden_size}, WeightKind::Norm}; }
TensorSpec WeightNames::lm_head() const {
  MOETRON_CHECK(!c_.tie_word_embeddings, "the model ties lm_head to the embeddings: there is no lm_head.weight");
  return {"lm_head.weight", {c_.vocab_size, c_.hidden_size}, WeightKind::Linear};
}

TensorSpec WeightNames::input_norm(int64_t layer) const {
  return {layer_prefix(layer) + "input_layernorm.weight", {c_.hidden_size}, WeightKind::Norm};
}
TensorSpec WeightNames::post_attention_norm(int64_t layer) const {
  return {layer_prefix(layer) + "post_attention_layernorm.weight", {c_.hidden_size}, WeightKind::Norm};
}

// ---- attention ----------------------------------------------------------------------------------

TensorSpec WeightNames::q_proj(int64_t layer) const {
  return {layer_prefix(layer) + "self_attn.q_proj.weight", {c_.q_width(), c_.hidden_size}, WeightKind::Linear};
}
TensorSpec WeightNames::k_proj(int64_t layer) const {
  return {layer_prefix(layer) + "self_attn.k_proj.weight", {c_.kv_width(), c_.hidden_size}, WeightKind::Linear};
}
TensorSpec WeightNames::v_proj(int64_t layer) const {
  return {layer_prefix(layer) + "self_attn.v_proj.weight", {c_.kv_width(), c_.hidden_size}, WeightKind::Linear};
}
TensorSpec WeightNames::o_proj(int64_t layer) const {
  return {layer_prefix(layer) + "self_attn.o_proj.weight", {c_.hidden_size, c_.q_width()}, WeightKind::Linear};
}

namespace {
// A projection's bias: same name with `.bias`, one entry per output row.
TensorSpec bias_of(const TensorSpec& weight) {
  const std::string suffix = ".weight";
  return {weight.name.substr(0, weight.name.size() - suffix.size()) + ".bias", {weight.shape[0]}, WeightKind::Bias};
}

void check_qkv_bias(const ModelConfig& c) {
  MOETRON_CHECK(c.qkv_bias, family_name(c.family) << " config has no q/k/v bias");
}
}  // namespace

TensorSpec WeightNames::q_bias(int64_t layer) const {
  check_qkv_bias(c_);
  return bias_of(q_proj(layer));
}
TensorSpec WeightNames::k_bias(int64_t layer) const {
  check_qkv_bias(c_);
  return bias_of(k_proj(layer));
}
TensorSpec WeightNames::v_bias(int64_t layer) const {
  check_qkv_bias(c_);
  return bias_of(v_proj(layer));
}
TensorSpec WeightNames::o_bias(int64_t layer) const {
  MOETRON_CHECK(c_.o_bias, family_name(c_.family) << " config has no o_proj bias");
  return bias_of(o_proj(layer));
}

TensorSpec WeightNames::q_norm(int64_t layer) const {
  MOETRON_CHECK(c_.qk_norm != QkNorm::None, family_name(c_.family) << " has no QK-norm");
  int64_t width = c_.qk_norm == QkNorm::PerHead ? c_.head_dim : c_.q_width();
  return {layer_prefix(layer) + "self_attn.q_norm.weight", {width}, WeightKind::Norm};
}
TensorSpec WeightNames::k_norm(int64_t layer) const {
  MOETRON_CHECK(c_.qk_norm != QkNorm::None, family_name(c_.family) << " has no QK-norm");
  int64_t width = c_.qk_norm == QkNorm::PerHead ? c_.head_dim : c_.kv_width();
  return {layer_prefix(layer) + "self_attn.k_norm.weight", {width}, WeightKind::Norm};
}

// ---- MLP ----------------------------------------------------------------------------------------

TensorSpec WeightNames::router(int64_t layer) const {
  check_expert(layer, 0);
  return {mlp_prefix(layer) + "gate.weight", {c_.num_experts, c_.hidden_size}, WeightKind::Gate};
}

// Mixtral names its expert matrices w1 (gate), w3 (up), w2 (down); the others spell them out.
TensorSpec WeightNames::expert_matrix(int64_t layer, int64_t e, const char* name, const char* mixtral_name,
                                      std::vector<int64_t> shape) const {
  check_expert(layer, e);
  return {mlp_prefix(layer) + "experts." + std::to_string(e) + "." +
              (c_.family == Family::Mixtral ? mixtral_name : name) + ".weight",
          std::move(shape), WeightKind::Linear};
}

TensorSpec WeightNames::expert_gate(int64_t layer, int64_t e) const {
  return expert_matrix(layer, e, "gate_proj", "w1", {c_.moe_intermediate_size, c_.hidden_size});
}
TensorSpec WeightNames::expert_up(int64_t layer, int64_t e) const {
  return expert_matrix(layer, e, "up_proj", "w3", {c_.moe_intermediate_size, c_.hidden_size});
}
TensorSpec WeightNames::expert_down(int64_t layer, int64_t e) const {
  return expert_matrix(layer, e, "down_proj", "w2", {c_.hidden_size, c_.moe_intermediate_size});
}

namespace {
void check_shared_expert(const ModelConfig& c, int64_t layer) {
  MOETRON_CHECK(c.shared_expert_intermediate_size > 0, family_name(c.family) << " config has no shared expert");
  MOETRON_CHECK(layer < 0 || layer >= c.num_layers || c.layer_is_moe[layer],
                "layer " << layer << " is dense: it has no shared expert");
}
}  // namespace

// A matrix of a SwiGLU MLP of this width: gate_proj and up_proj [width, hidden], down_proj [hidden, width].
TensorSpec WeightNames::swiglu_matrix(const std::string& prefix, const std::string& which, int64_t width) const {
  std::vector<int64_t> shape = which == "down_proj" ? std::vector<int64_t>{c_.hidden_size, width}
                                                    : std::vector<int64_t>{width, c_.hidden_size};
  return {prefix + which + ".weight", std::move(shape), WeightKind::Linear};
}

TensorSpec WeightNames::shared_expert_gate_proj(int64_t layer) const {
  check_shared_expert(c_, layer);
  return swiglu_matrix(mlp_prefix(layer) + "shared_expert.", "gate_proj", c_.shared_expert_intermediate_size);
}
TensorSpec WeightNames::shared_expert_up(int64_t layer) const {
  check_shared_expert(c_, layer);
  return swiglu_matrix(mlp_prefix(layer) + "shared_expert.", "up_proj", c_.shared_expert_intermediate_size);
}
TensorSpec WeightNames::shared_expert_down(int64_t layer) const {
  check_shared_expert(c_, layer);
  return swiglu_matrix(mlp_prefix(layer) + "shared_expert.", "down_proj", c_.shared_expert_intermediate_size);
}
TensorSpec WeightNames::shared_expert_gate(int64_t layer) const {
  check_shared_expert(c_, layer);
  MOETRON_CHECK(c_.shared_expert_gate, family_name(c_.family) << " config has no shared-expert gate");
  return {mlp_prefix(layer) + "shared_expert_gate.weight", {1, c_.hidden_size}, WeightKind::Gate};
}

void WeightNames::check_dense(int64_t layer) const {
  check_layer(layer);
  MOETRON_CHECK(!c_.layer_is_moe[layer], "layer " << layer << " is an MoE layer: it has no dense MLP");
}

TensorSpec WeightNames::dense_gate(int64_t layer) const {
  check_dense(layer);
  return swiglu_matrix(mlp_prefix(layer), "gate_proj", c_.intermediate_size);
}
TensorSpec WeightNames::dense_up(int64_t layer) const {
  check_dense(layer);
  return swiglu_matrix(mlp_prefix(layer), "up_proj", c_.intermediate_size);
}
TensorSpec WeightNames::dense_down(int64_t layer) const {
  check_dense(layer);
  return swiglu_matrix(mlp_prefix(layer), "down_proj", c_.intermediate_size);
}

// ---- whole model --------------------------------------------------------------------------------

std::vector<TensorSpec> WeightNames::layer_tensors(int64_t layer) const {
  std::vector<TensorSpec> t{input_norm(layer), q_proj(layer), k_proj(layer), v_proj(layer), o_proj(layer)};
  if (c_.qkv_bias) t.insert(t.end(), {q_bias(layer), k_bias(layer), v_bias(layer)});
  if (c_.o_bias) t.push_back(o_bias(layer));
  if (c_.qk_norm != QkNorm::None) t.insert(t.end(), {q_norm(layer), k_norm(layer)});
  t.push_back(post_attention_norm(layer));
  if (!c_.layer_is_moe[layer]) {
    t.insert(t.end(), {dense_gate(layer), dense_up(layer), dense_down(layer)});
    return t;
  }
  t.push_back(router(layer));
  for (int64_t e = 0; e < c_.num_experts; ++e)
    t.insert(t.end(), {expert_gate(layer, e), expert_up(layer, e), expert_down(layer, e)});
  if (c_.shared_expert_intermediate_size > 0)
    t.insert(t.end(), {shared_expert_gate_proj(layer), shared_expert_up(layer), shared_expert_down(layer)});
  if (c_.shared_expert_gate) t.push_back(shared_expert_gate(layer));
  return t;
}

std::vector<TensorSpec> WeightNames::all_tensors() const {
  std::vector<TensorSpec> t{embed()};
  for (int64_t l = 0; l < c_.num_layers; ++l) {
    std::vector<TensorSpec> layer = layer_tensors(l);
    t.insert(t.end(), std::make_move_iterator(layer.begin()), std::make_move_iterator(layer.end()));
  }
  t.push_back(final_norm());
  if (!c_.tie_word_embeddings) t.push_back(lm_head());
  return t;
}

void check_checkpoint(const Checkpoint& ckpt, const ModelConfig& config) {
  for (const TensorSpec& spec : expected_tensors(config)) {
    MOETRON_CHECK(ckpt.has(spec.name), ckpt.dir() << ": missing tensor '" << spec.name << "' (a "
                                                  << family_name(config.family) << " checkpoint needs it)");
    TensorView v = get_checked(ckpt, spec);
    MOETRON_CHECK(v.dtype == DType::BF16 || v.dtype == DType::F16 || v.dtype == DType::F32,
                  ckpt.dir() << ": tensor '" << spec.name << "' is " << dtype_name(v.dtype)
                             << "; weights must be BF16, F16 or F32");
  }
}

}  // namespace moetron
