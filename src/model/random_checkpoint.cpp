#include "moetron/model/random_checkpoint.hpp"

#include <cmath>
#include <filesystem>

#include "moetron/core/error.hpp"
#include "moetron/io/disk_space.hpp"
#include "moetron/model/safetensors.hpp"

namespace moetron {

using nlohmann::json;

// ---- the generator --------------------------------------------------------------------------

namespace {
uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char b : s) h = (h ^ b) * 0x100000001B3ull;
  return h;
}
}  // namespace

uint64_t random_tensor_key(uint64_t seed, const std::string& tensor_name) {
  return mix64(seed * 0x9E3779B97F4A7C15ull ^ fnv1a64(tensor_name));
}

RandomFill random_fill_for(const TensorSpec& spec, uint64_t seed) {
  double fan_in = spec.shape.empty() ? 1.0 : static_cast<double>(spec.shape.back());
  double scale = 1.0, offset = 0.0;
  switch (spec.kind) {
    case WeightKind::Embedding: scale = 1.0; break;
    case WeightKind::Norm: scale = 0.2; offset = 1.0; break;
    case WeightKind::Linear: scale = 1.0 / std::sqrt(fan_in); break;
    case WeightKind::Gate: scale = 2.0 / std::sqrt(fan_in); break;  // decisive routing
    case WeightKind::Bias: scale = 0.1; break;
  }
  RandomFill f;
  f.key = random_tensor_key(seed, spec.name);
  f.multiplier = static_cast<float>(scale / kCenteredStd);
  f.offset = static_cast<float>(offset);
  return f;
}

// ---- presets ----------------------------------------------------------------------------------

namespace {

struct Preset {
  Family family;
  const char* name;
  const char* json_text;  // HF config.json, transformers 4.x spelling
};

// `tiny` mirrors tests/hf/make_fixtures.py; the others are the hub's config.json values.
const Preset kPresets[] = {
    {Family::Mixtral, "tiny", R"({
      "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "torch_dtype": "bfloat16",
      "hidden_act": "silu", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 4,
      "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48,
      "num_local_experts": 8, "num_experts_per_tok": 2, "max_position_embeddings": 256,
      "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": null,
      "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})"},
    {Family::Qwen2Moe, "tiny", R"({
      "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "torch_dtype": "bfloat16",
      "hidden_act": "silu", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 4,
      "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96,
      "moe_intermediate_size": 32, "shared_expert_intermediate_size": 80, "num_experts": 8,
      "num_experts_per_tok": 4, "norm_topk_prob": false, "decoder_sparse_step": 1,
      "mlp_only_layers": [2], "qkv_bias": true, "max_position_embeddings": 256, "rms_norm_eps": 1e-06,
      "rope_theta": 10000.0, "use_sliding_window": false, "tie_word_embeddings": false,
      "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})"},
    {Family::Olmoe, "tiny", R"({
      "architectures": ["OlmoeForCausalLM"], "model_type": "olmoe", "torch_dtype": "bfloat16",
      "hidden_act": "silu", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 4,
      "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 32, "num_experts": 8,
      "num_experts_per_tok": 2, "norm_topk_prob": false, "attention_bias": false, "clip_qkv": null,
      "max_position_embeddings": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
      "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})"},
    {Family::Qwen3Moe, "tiny", R"({
      "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "torch_dtype": "bfloat16",
      "hidden_act": "silu", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 4,
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 96,
      "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": true,
      "decoder_sparse_step": 1, "mlp_only_layers": [], "attention_bias": false,
      "max_position_embeddings": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
      "use_sliding_window": false, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
      "pad_token_id": 0})"},
    // allenai/OLMoE-1B-7B-0924
    {Family::Olmoe, "olmoe-1b-7b", R"({
      "architectures": ["OlmoeForCausalLM"], "model_type": "olmoe", "torch_dtype": "bfloat16",
      "hidden_act": "silu", "vocab_size": 50304, "hidden_size": 2048, "num_hidden_layers": 16,
      "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 1024,
      "num_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": false, "attention_bias": false,
      "clip_qkv": null, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
      "rope_scaling": null, "tie_word_embeddings": false, "eos_token_id": 50279, "pad_token_id": 1})"},
    // Qwen/Qwen1.5-MoE-A2.7B
    {Family::Qwen2Moe, "qwen1.5-moe-a2.7b", R"({
      "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "torch_dtype": "bfloat16",
      "hidden_act": "silu", "vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 24,
      "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 5632,
      "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "num_experts": 60,
      "num_experts_per_tok": 4, "norm_topk_prob": false, "decoder_sparse_step": 1,
      "max_position_embeddings": 8192, "max_window_layers": 21, "rms_norm_eps": 1e-06,
      "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": false,
      "tie_word_embeddings": false, "bos_token_id": 151643, "eos_token_id": 151643})"},
    // mistralai/Mixtral-8x7B-v0.1
    {Family::Mixtral, "mixtral-8x7b", R"({
      "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "torch_dtype": "bfloat16",
      "hidden_act": "silu", "vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32,
      "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
      "num_local_experts": 8, "num_experts_per_tok": 2, "max_position_embeddings": 32768,
      "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": null,
      "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2})"},
    // Qwen/Qwen3-30B-A3B
    {Family::Qwen3Moe, "qwen3-30b-a3b", R"({
      "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "torch_dtype": "bfloat16",
      "hidden_act": "silu", "vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 48,
      "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144,
      "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true,
      "decoder_sparse_step": 1, "mlp_only_layers": [], "attention_bias": false,
      "max_position_embeddings": 40960, "max_window_layers": 48, "rms_norm_eps": 1e-06,
      "rope_theta": 1000000.0, "rope_scaling": null, "sliding_window": null, "use_sliding_window": false,
      "tie_word_embeddings": false, "bos_token_id": 151643, "eos_token_id": 151645})"},
};

}  // namespace

std::vector<std::string> preset_names(Family family) {
  std::vector<std::string> out;
  for (const Preset& p : kPresets)
    if (p.family == family) out.push_back(p.name);
  return out;
}

json hf_preset_json(Family family, const std::string& preset) {
  for (const Preset& p : kPresets)
    if (p.family == family && preset == p.name) return json::parse(p.json_text);
  std::string known;
  for (const std::string& n : preset_names(family)) known += (known.empty() ? "" : ", ") + n;
  MOETRON_FAIL("unknown preset '" << preset << "' for family " << family_name(family) << " (known: " << known << ")");
}

void apply_config_overrides(json& config, const std::vector<std::string>& overrides) {
  for (const std::string& kv : overrides) {
    size_t eq = kv.find('=');
    MOETRON_CHECK(eq != std::string::npos && eq > 0, "--set '" << kv << "': expected key=value");
    std::string key = kv.substr(0, eq), text = kv.substr(eq + 1);
    json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
    config[key] = value.is_discarded() ? json(text) : value;
  }
}

// ---- writing ----------------------------------------------------------------------------------

const char* torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::F32: return "float32";
    default: MOETRON_FAIL("weights cannot be " << dtype_name(dtype) << " (use bf16, f16 or f32)");
  }
}

DType parse_weight_dtype(const std::string& name, const std::string& where) {
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "float16") return DType::F16;
  if (name == "f32" || name == "float32") return DType::F32;
  MOETRON_FAIL(where << ": unsupported weight dtype '" << name << "' (use bf16, f16 or f32)");
}

RandomCheckpointResult write_random_checkpoint(json config_json, const std::string& dir, uint64_t seed, DType dtype,
                                               uint64_t max_shard_bytes) {
  namespace fs = std::filesystem;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  MOETRON_CHECK(config_json.is_object(), config_path << ": the config to write is not a JSON object");
  config_json["torch_dtype"] = torch_dtype_name(dtype);
  if (config_json.contains("dtype")) config_json["dtype"] = torch_dtype_name(dtype);  // 5.x spelling

  RandomCheckpointResult result;
  result.config = parse_model_config(config_json, config_path);
  std::vector<TensorSource> sources;
  for (const TensorSpec& spec : expected_tensors(result.config)) {
    RandomFill fill = random_fill_for(spec, seed);
    TensorSource s;
    s.name = spec.name;
    s.dtype = dtype;
    s.shape = spec.shape;
    s.fill = [fill, dtype](int64_t first, int64_t count, void* dst) { fill_random(fill, dtype, first, count, dst); };
    result.data_bytes += s.nbytes();
    sources.push_back(std::move(s));
  }
  SafetensorsMetadata metadata{{"format", "pt"}, {"moetron_seed", std::to_string(seed)}};
  // Headers and the index take a few hundred bytes a tensor beyond the data.
  check_free_space(dir, result.data_bytes + 1024 * sources.size() + (1u << 20), "the checkpoint");
  result.files = write_sharded_safetensors(dir, sources, max_shard_bytes, metadata);
  write_text_file_atomically(config_path, config_json.dump(2) + "\n");
  result.files.push_back("config.json");
  return result;
}

}  // namespace moetron
