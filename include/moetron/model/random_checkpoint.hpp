// Deterministic random-weight checkpoints, in Hugging Face's layout, for every family at tiny
// and at real sizes, without downloading anything.
//
// Every element is a pure function of (seed, tensor name, element index): the generator and its
// exact definition are in core/random_fill.hpp; this header makes each tensor's key and scale.
// Scales (as tests/hf/make_fixtures.py): linear N(0,1)/sqrt(fan_in), router and shared-expert
// gate 2/sqrt(fan_in), embeddings N(0,1), norms 1 + 0.2 N, biases 0.1 N.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moetron/core/dtype.hpp"
#include "moetron/core/random_fill.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weight_names.hpp"

namespace moetron {

// ---- the generator's keys ---------------------------------------------------------------------

uint64_t random_tensor_key(uint64_t seed, const std::string& tensor_name);
// Parameters for a tensor of this kind and shape (fan_in = last dimension).
RandomFill random_fill_for(const TensorSpec& spec, uint64_t seed);

// ---- presets and overrides ------------------------------------------------------------------

// Preset names for a family: "tiny" (shaped like tests/fixtures) and the real model's name.
std::vector<std::string> preset_names(Family family);
// The HF config.json (transformers 4.x spelling) of a preset; Error for an unknown name.
nlohmann::json hf_preset_json(Family family, const std::string& preset);
// Applies `key=value` edits to top-level keys; the value is parsed as JSON, else taken as a
// string ("hidden_size=128", "mlp_only_layers=[0,1]", "torch_dtype=float16").
void apply_config_overrides(nlohmann::json& config, const std::vector<std::string>& overrides);

// ---- writing --------------------------------------------------------------------------------

struct RandomCheckpointResult {
  ModelConfig config;
  std::vector<std::string> files;  // written into the folder, config.json last
  uint64_t data_bytes = 0;
};

// Writes `dir/config.json` and the safetensors (sharded above max_shard_bytes), streaming so
// that even Mixtral-8x7B (93 GB) needs one chunk of memory. The weights are written first and
// config.json last, each atomically, so a folder with a config.json is a whole checkpoint.
// `config_json` is parsed (and validated) with the one HF parser; its dtype is set to `dtype`.
RandomCheckpointResult write_random_checkpoint(nlohmann::json config_json, const std::string& dir, uint64_t seed,
                                               DType dtype, uint64_t max_shard_bytes);

// The HF name of a floating dtype ("bfloat16", "float16", "float32") and back.
const char* torch_dtype_name(DType dtype);
DType parse_weight_dtype(const std::string& name, const std::string& where);  // bf16|f16|f32

}  // namespace moetron
