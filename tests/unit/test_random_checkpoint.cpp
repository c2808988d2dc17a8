// Random checkpoints and weight names: the tiny preset of every family has exactly the HF
// fixture's tensor names and shapes, values are deterministic and any slice regenerates alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model_test_helpers.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/model/safetensors.hpp"
#include "moetron/model/weight_names.hpp"

namespace moetron {
namespace {

using nlohmann::json;
using testing::bytes_of;
using testing::fixture_dir;
using testing::TempDir;
using testing::throws_error;

const Family kFamilies[] = {Family::Mixtral, Family::Qwen2Moe, Family::Olmoe, Family::Qwen3Moe};

TEST(RandomWeights, DeterministicPerSeedNameAndIndex) {
  RandomFill a = random_fill_for({"w", {8, 8}, WeightKind::Linear}, 1);
  RandomFill a2 = random_fill_for({"w", {8, 8}, WeightKind::Linear}, 1);
  RandomFill other_seed = random_fill_for({"w", {8, 8}, WeightKind::Linear}, 2);
  RandomFill other_name = random_fill_for({"v", {8, 8}, WeightKind::Linear}, 1);
  EXPECT_EQ(a.key, a2.key);
  EXPECT_NE(a.key, other_seed.key);
  EXPECT_NE(a.key, other_name.key);
  int same_seed = 0, same_name = 0;
  for (uint64_t i = 0; i < 64; ++i) {
    EXPECT_EQ(random_fill_value(a, i), random_fill_value(a2, i));
    same_seed += random_fill_value(a, i) == random_fill_value(other_seed, i);
    same_name += random_fill_value(a, i) == random_fill_value(other_name, i);
  }
  EXPECT_LT(same_seed, 4);
  EXPECT_LT(same_name, 4);
}

uint32_t float_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

// The generator is exactly the function random_checkpoint.hpp documents: these values were
// computed from that description by an independent (Python) implementation, so a device port
// can be checked against them too.
TEST(RandomWeights, MatchesTheDocumentedFunction) {
  RandomFill q = random_fill_for({"model.layers.0.self_attn.q_proj.weight", {64, 64}, WeightKind::Linear}, 1234);
  EXPECT_EQ(q.key, 0x3a23b0050bcbf8bbull);
  EXPECT_EQ(float_bits(random_fill_value(q, 0)), 0xbd561216u);
  EXPECT_EQ(float_bits(random_fill_value(q, 1)), 0x3d41f9e5u);
  EXPECT_EQ(float_bits(random_fill_value(q, 4095)), 0x3e506d8eu);
  EXPECT_EQ(float_bits(random_fill_value(q, 1000000007)), 0x3ad95f54u);
  RandomFill norm = random_fill_for({"model.norm.weight", {64}, WeightKind::Norm}, 1234);
  EXPECT_EQ(float_bits(random_fill_value(norm, 5)), 0x3face63cu);
}

// Mean and standard deviation of n values of a tensor of this kind and shape.
std::pair<double, double> moments(const TensorSpec& spec, int64_t n) {
  RandomFill f = random_fill_for(spec, 42);
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    double v = random_fill_value(f, static_cast<uint64_t>(i));
    sum += v;
    sq += v * v;
  }
  double mean = sum / n;
  return {mean, std::sqrt(sq / n - mean * mean)};
}

TEST(RandomWeights, ScalesByKind) {
  const int64_t n = 200000;
  auto [em, es] = moments({"e", {256, 64}, WeightKind::Embedding}, n);
  EXPECT_NEAR(em, 0.0, 0.01);
  EXPECT_NEAR(es, 1.0, 0.01);
  auto [lm, ls] = moments({"l", {64, 256}, WeightKind::Linear}, n);
  EXPECT_NEAR(lm, 0.0, 0.01 / 16);
  EXPECT_NEAR(ls, 1.0 / 16, 0.01 / 16);
  auto [gm, gs] = moments({"g", {8, 64}, WeightKind::Gate}, n);
  EXPECT_NEAR(gs, 2.0 / 8, 0.01 / 4);
  auto [nm, ns] = moments({"n", {64}, WeightKind::Norm}, n);
  EXPECT_NEAR(nm, 1.0, 0.01);
  EXPECT_NEAR(ns, 0.2, 0.005);
  auto [bm, bs] = moments({"b", {64}, WeightKind::Bias}, n);
  EXPECT_NEAR(bs, 0.1, 0.002);
  (void)gm;
  (void)bm;
}

TEST(RandomWeights, DtypesRoundTheSameFloat) {
  RandomFill f = random_fill_for({"w", {4, 4}, WeightKind::Linear}, 7);
  std::vector<float> f32(16);
  std::vector<uint16_t> bf16(16), f16(16);
  fill_random(f, DType::F32, 0, 16, f32.data());
  fill_random(f, DType::BF16, 0, 16, bf16.data());
  fill_random(f, DType::F16, 0, 16, f16.data());
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(bf16[i], float_to_bf16(f32[i]));
    EXPECT_EQ(f16[i], float_to_f16(f32[i]));
  }
  EXPECT_TRUE(throws_error([&] { fill_random(f, DType::I32, 0, 1, f32.data()); }, {"I32"}));
}

// The writer's names and shapes are exactly those transformers saved for the fixtures.
TEST(RandomCheckpoint, TinyPresetMatchesHfFixtureLayout) {
  for (Family family : kFamilies) {
    SCOPED_TRACE(family_name(family));
    TempDir dir("rc");
    RandomCheckpointResult r = write_random_checkpoint(hf_preset_json(family, "tiny"), dir.str(), 5, DType::BF16, 1ull << 30);
    Checkpoint made = Checkpoint::open(dir.str());
    Checkpoint hf = Checkpoint::open(fixture_dir(family_name(family)));
    ASSERT_EQ(made.names(), hf.names());
    for (const std::string& name : hf.names()) EXPECT_EQ(made.get(name).shape, hf.get(name).shape) << name;
    check_checkpoint(made, r.config);
    check_checkpoint(hf, load_model_config(fixture_dir(family_name(family)) + "/config.json"));
    // The written config parses to the same model as the fixture's.
    ModelConfig written = load_model_config(dir.file("config.json"));
    ModelConfig fixture = load_model_config(fixture_dir(family_name(family)) + "/config.json");
    EXPECT_EQ(written.to_json(), fixture.to_json());
    EXPECT_EQ(r.data_bytes, made.data_bytes());
    EXPECT_EQ(r.files.back(), "config.json");
  }
}

TEST(RandomCheckpoint, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir a("rc"), b("rc"), c("rc");
  json cfg = hf_preset_json(Family::Olmoe, "tiny");
  write_random_checkpoint(cfg, a.str(), 9, DType::BF16, 1ull << 30);
  write_random_checkpoint(cfg, b.str(), 9, DType::BF16, 1ull << 30);
  write_random_checkpoint(cfg, c.str(), 10, DType::BF16, 1ull << 30);
  const std::string name = "model.layers.1.mlp.experts.3.up_proj.weight";
  TensorView va = Checkpoint::open(a.str()).get(name);
  EXPECT_EQ(bytes_of(va), bytes_of(Checkpoint::open(b.str()).get(name)));
  EXPECT_NE(bytes_of(va), bytes_of(Checkpoint::open(c.str()).get(name)));
}

// Any rank regenerates any rows of any tensor alone; equal to the same rows of the whole file.
TEST(RandomCheckpoint, SliceRegenerationEqualsFullTensor) {
  TempDir dir("rc");
  json cfg = hf_preset_json(Family::Qwen2Moe, "tiny");
  RandomCheckpointResult r = write_random_checkpoint(cfg, dir.str(), 3, DType::BF16, 1ull << 30);
  Checkpoint ckpt = Checkpoint::open(dir.str());
  WeightNames names(r.config);
  for (const TensorSpec& spec : {names.q_proj(2), names.expert_down(1, 5), names.embed(), names.q_bias(0)}) {
    SCOPED_TRACE(spec.name);
    TensorView full = ckpt.get_checked(spec.name, spec.shape);
    const int64_t cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
    const int64_t first_row = spec.shape[0] / 3, rows = spec.shape[0] / 2;
    std::vector<uint16_t> slice(static_cast<size_t>(rows * cols));
    fill_random(random_fill_for(spec, 3), DType::BF16, first_row * cols, rows * cols, slice.data());
    EXPECT_EQ(std::memcmp(full.row_data(first_row), slice.data(), slice.size() * 2), 0);
  }
}

TEST(RandomCheckpoint, ShardsLargeCheckpoints) {
  TempDir dir("rc");
  RandomCheckpointResult r =
      write_random_checkpoint(hf_preset_json(Family::Mixtral, "tiny"), dir.str(), 1, DType::F32, 200000);
  Checkpoint ckpt = Checkpoint::open(dir.str());
  EXPECT_TRUE(ckpt.sharded());
  EXPECT_GT(r.files.size(), 3u);
  check_checkpoint(ckpt, r.config);
  EXPECT_EQ(ckpt.get("lm_head.weight").dtype, DType::F32);
  EXPECT_EQ(load_model_config(dir.file("config.json")).torch_dtype, "float32");
}

TEST(RandomCheckpoint, BadConfigWritesNothing) {
  TempDir dir("rc");
  json cfg = hf_preset_json(Family::Olmoe, "tiny");
  cfg["num_key_value_heads"] = 3;
  EXPECT_TRUE(throws_error([&] { write_random_checkpoint(cfg, dir.str(), 1, DType::BF16, 1 << 30); },
                           {"config.json", "num_key_value_heads"}));
  EXPECT_TRUE(std::filesystem::is_empty(dir.str()));
}

// The parameter count of ModelConfig and the tensor list agree, for every preset.
TEST(WeightNames, TensorListAddsUpToParameterCount) {
  for (Family f : kFamilies) {
    for (const std::string& p : preset_names(f)) {
      SCOPED_TRACE(p);
      ModelConfig c = parse_model_config(hf_preset_json(f, p), p);
      int64_t sum = 0;
      for (const TensorSpec& t : expected_tensors(c)) {
        int64_t n = 1;
        for (int64_t d : t.shape) n *= d;
        sum += n;
      }
      EXPECT_EQ(sum, c.total_params());
    }
  }
}

TEST(CheckCheckpoint, ReportsFirstMissingOrMisshapedTensor) {
  Checkpoint hf = Checkpoint::open(fixture_dir("qwen2_moe"));
  ModelConfig c = load_model_config(fixture_dir("qwen2_moe") + "/config.json");
  ModelConfig more_experts = c;
  more_experts.num_experts = 9;
  EXPECT_TRUE(throws_error([&] { check_checkpoint(hf, more_experts); },
                           {"model.layers.0.mlp.gate.weight", "[8, 64]", "[9, 64]"}));
  ModelConfig wider = c;
  wider.moe_intermediate_size = 40;
  EXPECT_TRUE(throws_error([&] { check_checkpoint(hf, wider); },
                           {"model.layers.0.mlp.experts.0.gate_proj.weight", "[32, 64]", "[40, 64]"}));
  ModelConfig all_moe = c;
  all_moe.layer_is_moe[2] = true;
  EXPECT_TRUE(throws_error([&] { check_checkpoint(hf, all_moe); }, {"missing tensor", "model.layers.2.mlp.gate.weight"}));
}

TEST(WeightNames, FamilySpellings) {
  ModelConfig mixtral = load_model_config(fixture_dir("mixtral") + "/config.json");
  WeightNames m(mixtral);
  EXPECT_EQ(m.expert_gate(0, 3).name, "model.layers.0.block_sparse_moe.experts.3.w1.weight");
  EXPECT_EQ(m.expert_up(1, 0).name, "model.layers.1.block_sparse_moe.experts.0.w3.weight");
  EXPECT_EQ(m.expert_down(1, 0).shape, (std::vector<int64_t>{64, 48}));
  EXPECT_EQ(m.router(3).name, "model.layers.3.block_sparse_moe.gate.weight");
  EXPECT_EQ(m.router(3).kind, WeightKind::Gate);
  EXPECT_TRUE(throws_error([&] { m.q_bias(0); }, {"bias"}));
  EXPECT_TRUE(throws_error([&] { m.q_norm(0); }, {"QK-norm"}));
  EXPECT_TRUE(throws_error([&] { m.q_proj(4); }, {"layer 4"}));
  EXPECT_TRUE(throws_error([&] { m.expert_gate(0, 8); }, {"expert 8"}));
  EXPECT_TRUE(throws_error([&] { m.shared_expert_up(0); }, {"shared expert"}));

  WeightNames olmoe(load_model_config(fixture_dir("olmoe") + "/config.json"));
  EXPECT_EQ(olmoe.q_norm(0).shape, (std::vector<int64_t>{64}));
  EXPECT_EQ(olmoe.k_norm(0).shape, (std::vector<int64_t>{32}));

  ModelConfig qwen3c = load_model_config(fixture_dir("qwen3_moe") + "/config.json");
  WeightNames qwen3(qwen3c);
  EXPECT_EQ(qwen3.k_norm(0).shape, (std::vector<int64_t>{32}));
  EXPECT_EQ(qwen3.o_proj(0).shape, (std::vector<int64_t>{64, 128}));
  EXPECT_TRUE(throws_error([&] { qwen3.lm_head(); }, {"ties"}));

  WeightNames qwen2(load_model_config(fixture_dir("qwen2_moe") + "/config.json"));
  EXPECT_EQ(qwen2.shared_expert_gate(0).name, "model.layers.0.mlp.shared_expert_gate.weight");
  EXPECT_EQ(qwen2.shared_expert_gate(0).shape, (std::vector<int64_t>{1, 64}));
  EXPECT_EQ(qwen2.dense_down(2).name, "model.layers.2.mlp.down_proj.weight");
  EXPECT_EQ(qwen2.dense_down(2).shape, (std::vector<int64_t>{64, 96}));
  EXPECT_EQ(qwen2.k_bias(1).name, "model.layers.1.self_attn.k_proj.bias");
  EXPECT_TRUE(throws_error([&] { qwen2.router(2); }, {"layer 2", "dense"}));
  EXPECT_TRUE(throws_error([&] { qwen2.dense_up(0); }, {"MoE"}));
}

TEST(Presets, NamesOverridesAndErrors) {
  EXPECT_EQ(preset_names(Family::Mixtral), (std::vector<std::string>{"tiny", "mixtral-8x7b"}));
  EXPECT_TRUE(throws_error([] { hf_preset_json(Family::Olmoe, "mixtral-8x7b"); },
                           {"mixtral-8x7b", "olmoe", "tiny", "olmoe-1b-7b"}));
  json j = hf_preset_json(Family::Qwen2Moe, "tiny");
  apply_config_overrides(j, {"hidden_size=128", "mlp_only_layers=[0,1]", "note=hello world", "head_dim=null"});
  EXPECT_EQ(j["hidden_size"], 128);
  EXPECT_EQ(j["mlp_only_layers"], json::array({0, 1}));
  EXPECT_EQ(j["note"], "hello world");
  EXPECT_TRUE(j["head_dim"].is_null());
  EXPECT_EQ(parse_model_config(j, "edited").layer_is_moe, (std::vector<bool>{false, false, true, true}));
  EXPECT_TRUE(throws_error([&] { apply_config_overrides(j, {"hidden_size"}); }, {"--set", "hidden_size", "key=value"}));
  EXPECT_TRUE(throws_error([&] { apply_config_overrides(j, {"=3"}); }, {"--set"}));
  for (Family f : kFamilies)
    for (const std::string& p : preset_names(f)) EXPECT_NO_THROW(parse_model_config(hf_preset_json(f, p), p)) << p;
}

}  // namespace
}  // namespace moetron
