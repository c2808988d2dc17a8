// Deterministic random-weight checkpoints, in Hugging Face's layout, for every family at tiny
// and at real sizes, without downloading anything.
//
// Every element is a pure function of (seed, tensor name, element index), so any rank can
// regenerate any slice of any tensor on its own, and the CUDA backend reproduces the same
// values on the device for `--load-format dummy`. The exact function, which a device
// implementation must follow bit for bit:
//
//   key      = mix64(seed * 0x9E3779B97F4A7C15 ^ fnv1a64(name))      once per tensor, on the host
//   bits     = mix64(key + (index + 1) * 0xD1B54A32D192ED03)         per element (uint64 wraparound)
//   sum      = bits[0:16) + bits[16:32) + bits[32:48) + bits[48:64)  four 16-bit unsigned integers
//   centered = 2 * sum - 4 * 65535                                   an even int32 in [-262140, 262140]
//   value    = offset + float(centered) * multiplier                 float32, two rounded ops, no FMA
//   stored   = round-to-nearest-even to the checkpoint dtype (bf16 / f16), or the float itself
//
//   mix64(z): z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31
//   fnv1a64(s): h = 0xCBF29CE484222325; for each byte b: h = (h ^ b) * 0x100000001B3
//
// `centered` is a sum of four uniforms (Irwin-Hall), which is close to normal with standard
// deviation kCenteredStd; multiplier = float(scale / kCenteredStd), computed in double on the host.
// Scales (as tests/hf/make_fixtures.py): linear N(0,1)/sqrt(fan_in), router and shared-expert
// gate 2/sqrt(fan_in), embeddings N(0,1), norms 1 + 0.2 N, biases 0.1 N.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moetron/core/dtype.hpp"
#include "moetron/core/host_device.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weight_names.hpp"

namespace moetron {

// ---- the generator --------------------------------------------------------------------------

// Standard deviation of `centered` above: 2 * sqrt(4 * (65536^2 - 1) / 12).
constexpr double kCenteredStd = 75674.45447441297;

MOETRON_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z;
}

// The per-tensor parameters of the generator: all a device kernel needs for one tensor.
struct RandomFill {
  uint64_t key = 0;
  float multiplier = 0.0f;
  float offset = 0.0f;
};

uint64_t random_tensor_key(uint64_t seed, const std::string& tensor_name);
// Parameters for a tensor of this kind and shape (fan_in = last dimension).
RandomFill random_fill_for(const TensorSpec& spec, uint64_t seed);

// Element `index` (row-major) of the tensor `fill` describes, as float32.
MOETRON_HOST_DEVICE inline float random_fill_value(const RandomFill& fill, uint64_t index) {
  uint64_t bits = mix64(fill.key + (index + 1) * 0xD1B54A32D192ED03ull);
  int32_t sum = static_cast<int32_t>((bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) + ((bits >> 32) & 0xFFFF) + (bits >> 48));
  float centered = static_cast<float>(2 * sum - 4 * 65535);
#if defined(__CUDA_ARCH__)
  return __fadd_rn(fill.offset, __fmul_rn(centered, fill.multiplier));  // no FMA contraction
#else
  // Each step in double, then rounded once to float: the product of two floats is exact in
  // double and a double sum of two floats rounds to the correctly rounded float sum, so this
  // equals the two rounded float operations above whatever contraction flags the host uses.
  float product = static_cast<float>(static_cast<double>(centered) * static_cast<double>(fill.multiplier));
  return static_cast<float>(static_cast<double>(fill.offset) + static_cast<double>(product));
#endif
}

// Writes elements [first, first + count) of the tensor in `dtype` (BF16, F16 or F32) to `dst`.
void fill_random(const RandomFill& fill, DType dtype, int64_t first, int64_t count, void* dst);

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
