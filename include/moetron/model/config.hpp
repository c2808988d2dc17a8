// ModelConfig: one description of an MoE transformer, parsed from a Hugging Face config.json
// of any supported family, as transformers 4.x writes it (the hub's checkpoints: `rope_theta`
// at top level, `num_experts`) and as 5.x writes it (`rope_parameters`, `num_local_experts`).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace moetron {

enum class Family { Mixtral, Qwen2Moe, Olmoe, Qwen3Moe };
const char* family_name(Family f);  // the HF model_type: mixtral, qwen2_moe, olmoe, qwen3_moe
Family parse_family(const std::string& model_type, const std::string& where);

enum class QkNorm {
  None,
  WholeProjection,  // OLMoE: RMSNorm over all heads of the q (k) projection at once
  PerHead,          // Qwen3-MoE: RMSNorm over each head's head_dim
};

struct ModelConfig {
  Family family = Family::Mixtral;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;                 // hidden_size / num_heads unless config says otherwise
  int64_t intermediate_size = 0;        // dense MLP width (layers that are not MoE)
  int64_t moe_intermediate_size = 0;    // each routed expert's width
  int64_t num_experts = 0;
  int64_t top_k = 0;
  bool norm_topk_prob = false;          // renormalise the top-k routing weights to sum to 1
  int64_t shared_expert_intermediate_size = 0;  // 0: no shared expert (qwen2_moe has one)
  bool shared_expert_gate = false;      // sigmoid(x . w) scales the shared expert (qwen2_moe)
  bool qkv_bias = false;                // bias on q, k, v projections
  bool o_bias = false;                  // bias on the output projection
  QkNorm qk_norm = QkNorm::None;
  double clip_qkv = 0.0;                // OLMoE: clamp q, k, v to [-c, c] when > 0
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  std::vector<bool> layer_is_moe;       // per layer: routed experts (true) or dense MLP (false)
  std::vector<int64_t> eos_token_ids;   // may be empty; ids outside the vocabulary never match
  std::string torch_dtype = "bfloat16"; // as declared by the checkpoint (informational)
  // What parse_model_config accepted, as transformers does, although it has no effect here (an
  // EOS id outside the vocabulary...): one message per field, naming file and field. Rank 0
  // logs them when parsing.
  std::vector<std::string> warnings;

  int64_t q_width() const { return num_heads * head_dim; }
  int64_t kv_width() const { return num_kv_heads * head_dim; }
  int64_t num_moe_layers() const;
  bool is_eos(int64_t token) const;

  // Parameter and byte counts for `model info` and the planner (bf16 = 2 bytes a parameter).
  int64_t total_params() const;
  int64_t active_params_per_token() const;  // attention + dense + top_k experts + shared + head

  // Throws Error naming the field when a value is impossible (zero sizes, heads not dividing...):
  // what transformers would fail on too, or what cannot run. Nothing else.
  void validate(const std::string& where) const;

  std::string summary() const;     // multi-line, human readable
  nlohmann::json to_json() const;  // the engine's own view (for results files)
};

// Parses a config.json. `path` is used in every error message.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& path);
ModelConfig load_model_config(const std::string& path);  // reads and parses the file
// Writes the config in Hugging Face's layout (transformers 4.x spelling, which both 4.x and 5.x
// load), so `moetron model make` checkpoints open in transformers.
nlohmann::json to_hf_config_json(const ModelConfig& c);

}  // namespace moetron
