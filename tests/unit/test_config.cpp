// ModelConfig parsing: the four HF fixtures (transformers 5.17 output), the 4.x spellings of the
// hub checkpoints, and every rejected input.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "model_test_helpers.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/random_checkpoint.hpp"

namespace moetron {
namespace {

using nlohmann::json;
using testing::fixture_dir;
using testing::throws_error;

json fixture_json(const std::string& family) {
  std::ifstream in(fixture_dir(family) + "/config.json");
  return json::parse(in);
}

// Parses the fixture after `edit` changed its JSON.
ModelConfig parse_edited(const std::string& family, const std::function<void(json&)>& edit) {
  json j = fixture_json(family);
  edit(j);
  return parse_model_config(j, family + "/config.json");
}

::testing::AssertionResult rejects(const std::string& family, const std::function<void(json&)>& edit,
                                   std::initializer_list<std::string> fragments) {
  return throws_error([&] { parse_edited(family, edit); }, fragments);
}

TEST(Config, MixtralFixture) {
  ModelConfig c = load_model_config(fixture_dir("mixtral") + "/config.json");
  EXPECT_EQ(c.family, Family::Mixtral);
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);  // head_dim: null
  EXPECT_EQ(c.intermediate_size, 48);
  EXPECT_EQ(c.moe_intermediate_size, 48);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.qk_norm, QkNorm::None);
  EXPECT_EQ(c.shared_expert_intermediate_size, 0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.max_position_embeddings, 256);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(4, true));
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_TRUE(c.is_eos(2));
  EXPECT_FALSE(c.is_eos(1));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(Config, Qwen2MoeFixture) {
  ModelConfig c = load_model_config(fixture_dir("qwen2_moe") + "/config.json");
  EXPECT_EQ(c.family, Family::Qwen2Moe);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 96);
  EXPECT_EQ(c.moe_intermediate_size, 32);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.top_k, 4);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.shared_expert_intermediate_size, 80);
  EXPECT_TRUE(c.shared_expert_gate);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.qk_norm, QkNorm::None);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e4);
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{true, true, false, true}));
  EXPECT_EQ(c.num_moe_layers(), 3);
}

TEST(Config, OlmoeFixture) {
  ModelConfig c = load_model_config(fixture_dir("olmoe") + "/config.json");
  EXPECT_EQ(c.family, Family::Olmoe);
  EXPECT_EQ(c.intermediate_size, 32);
  EXPECT_EQ(c.moe_intermediate_size, 32);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.qk_norm, QkNorm::WholeProjection);
  EXPECT_EQ(c.clip_qkv, 0.0);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(4, true));
}

TEST(Config, Qwen3MoeFixture) {
  ModelConfig c = load_model_config(fixture_dir("qwen3_moe") + "/config.json");
  EXPECT_EQ(c.family, Family::Qwen3Moe);
  EXPECT_EQ(c.head_dim, 32);  // differs from hidden / heads = 16
  EXPECT_EQ(c.q_width(), 128);
  EXPECT_EQ(c.kv_width(), 64);
  EXPECT_EQ(c.num_experts, 8);  // 5.x writes num_local_experts
  EXPECT_EQ(c.moe_intermediate_size, 32);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.qk_norm, QkNorm::PerHead);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(4, true));
}

// The hub's 4.x spelling: rope_theta at top level, num_experts, no qkv_bias field.
TEST(Config, Transformers4SpellingParsesTheSame) {
  for (const char* family : {"mixtral", "qwen2_moe", "olmoe", "qwen3_moe"}) {
    SCOPED_TRACE(family);
    ModelConfig v5 = load_model_config(fixture_dir(family) + "/config.json");
    ModelConfig v4 = parse_edited(family, [](json& j) {
      j["rope_theta"] = j["rope_parameters"]["rope_theta"];
      j.erase("rope_parameters");
      if (j["model_type"] != "mixtral" && j.contains("num_local_experts")) {
        j["num_experts"] = j["num_local_experts"];
        j.erase("num_local_experts");
      }
      j.erase("qkv_bias");
      j["torch_dtype"] = j["dtype"];
      j.erase("dtype");
    });
    EXPECT_EQ(v4.to_json(), v5.to_json());
  }
}

TEST(Config, BothExpertCountFieldsMustAgree) {
  EXPECT_EQ(parse_edited("qwen3_moe", [](json& j) { j["num_experts"] = 8; }).num_experts, 8);
  EXPECT_TRUE(rejects("qwen3_moe", [](json& j) { j["num_experts"] = 16; },
                      {"qwen3_moe/config.json", "contradictory", "num_local_experts", "num_experts"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j.erase("num_experts"); }, {"olmoe/config.json", "num_local_experts"}));
}

TEST(Config, RopeThetaSources) {
  EXPECT_DOUBLE_EQ(parse_edited("olmoe", [](json& j) { j["rope_theta"] = 10000.0; }).rope_theta, 1e4);
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["rope_theta"] = 5e5; }, {"contradictory", "rope_theta"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j.erase("rope_parameters"); }, {"missing", "rope_theta"}));
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["rope_parameters"]["rope_type"] = "yarn"; },
                      {"rope_type", "yarn", "supported"}));
  EXPECT_TRUE(rejects("qwen3_moe", [](json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; },
                      {"rope_scaling", "not supported"}));
  EXPECT_DOUBLE_EQ(parse_edited("qwen3_moe", [](json& j) { j["rope_scaling"] = nullptr; }).rope_theta, 1e4);
  // transformers runs plain RoPE for a "default" rope_scaling, in either spelling.
  EXPECT_DOUBLE_EQ(parse_edited("qwen3_moe", [](json& j) { j["rope_scaling"] = {{"rope_type", "default"}}; }).rope_theta,
                   1e4);
  EXPECT_DOUBLE_EQ(parse_edited("mixtral", [](json& j) { j["rope_scaling"] = {{"type", "default"}}; }).rope_theta, 1e6);
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}}; },
                      {"rope_scaling", "dynamic", "not supported"}));
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["rope_scaling"] = 2.0; }, {"rope_scaling", "not supported"}));
}

TEST(Config, UnsupportedFeatures) {
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["hidden_act"] = "gelu"; }, {"hidden_act", "gelu"}));
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["sliding_window"] = 128; }, {"sliding_window", "not supported"}));
  // A window as long as the context never slides.
  EXPECT_NO_THROW(parse_edited("mixtral", [](json& j) { j["sliding_window"] = 256; }));
  // Qwen: the window applies to the layers >= max_window_layers (4.x) or those layer_types names.
  EXPECT_TRUE(rejects("qwen2_moe",
                      [](json& j) {
                        j.erase("layer_types");
                        j["use_sliding_window"] = true;
                        j["sliding_window"] = 64;
                        j["max_window_layers"] = 2;
                      },
                      {"layer 2", "sliding_window", "max_window_layers", "not supported"}));
  EXPECT_TRUE(rejects("qwen3_moe",
                      [](json& j) {
                        j["sliding_window"] = 64;
                        j["layer_types"] = {"full_attention", "sliding_attention", "full_attention",
                                            "full_attention"};
                      },
                      {"layer 1", "sliding_window", "not supported"}));
  EXPECT_TRUE(rejects("qwen3_moe", [](json& j) { j["layer_types"] = {"full_attention"}; }, {"layer_types"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["model_type"] = "llama"; }, {"model_type", "llama"}));
}

TEST(Config, MissingAndMistypedFieldsNameFileAndField) {
  for (const char* field : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                            "intermediate_size", "num_experts_per_tok", "max_position_embeddings", "rms_norm_eps",
                            "model_type"}) {
    EXPECT_TRUE(rejects("olmoe", [&](json& j) { j.erase(field); }, {"olmoe/config.json", "missing", field}));
  }
  EXPECT_TRUE(rejects("qwen2_moe", [](json& j) { j.erase("moe_intermediate_size"); }, {"moe_intermediate_size"}));
  EXPECT_TRUE(rejects("qwen2_moe", [](json& j) { j.erase("shared_expert_intermediate_size"); },
                      {"shared_expert_intermediate_size"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["hidden_size"] = "64"; }, {"hidden_size", "integer"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["hidden_size"] = 64.5; }, {"hidden_size", "integer"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["norm_topk_prob"] = 1; }, {"norm_topk_prob", "true or false"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["rms_norm_eps"] = "small"; }, {"rms_norm_eps", "number"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["eos_token_id"] = "2"; }, {"eos_token_id"}));
  EXPECT_TRUE(rejects("qwen2_moe", [](json& j) { j["mlp_only_layers"] = 2; }, {"mlp_only_layers"}));
  EXPECT_TRUE(throws_error([] { parse_model_config(json::array(), "x.json"); }, {"x.json", "object"}));
  EXPECT_TRUE(throws_error([] { load_model_config("/nonexistent/config.json"); }, {"/nonexistent/config.json"}));
}

TEST(Config, ValidationOfImpossibleValues) {
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["num_key_value_heads"] = 3; },
                      {"num_key_value_heads", "num_attention_heads"}));
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["num_experts_per_tok"] = 9; }, {"num_experts_per_tok", "exceeds"}));
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["intermediate_size"] = 0; }, {"intermediate_size", "positive"}));
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["num_hidden_layers"] = -1; }, {"num_hidden_layers", "positive"}));
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["num_attention_heads"] = 5; }, {"num_attention_heads", "hidden_size"}));
  EXPECT_TRUE(rejects("qwen2_moe", [](json& j) { j["decoder_sparse_step"] = 0; }, {"decoder_sparse_step"}));
}

TEST(Config, Defaults) {
  ModelConfig c = parse_edited("mixtral", [](json& j) {
    j.erase("num_key_value_heads");
    j.erase("head_dim");
    j.erase("tie_word_embeddings");
    j.erase("eos_token_id");
    j.erase("hidden_act");
  });
  EXPECT_EQ(c.num_kv_heads, c.num_heads);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_FALSE(c.is_eos(2));
  // Qwen2-MoE in 4.x has no qkv_bias field and always uses the bias; 5.x may turn it off.
  EXPECT_TRUE(parse_edited("qwen2_moe", [](json& j) { j.erase("qkv_bias"); }).qkv_bias);
  EXPECT_FALSE(parse_edited("qwen2_moe", [](json& j) { j["qkv_bias"] = false; }).qkv_bias);
  EXPECT_FALSE(parse_edited("olmoe", [](json& j) { j.erase("norm_topk_prob"); }).norm_topk_prob);
  // Mixtral always renormalises, whatever the field says.
  EXPECT_TRUE(parse_edited("mixtral", [](json& j) { j["norm_topk_prob"] = false; }).norm_topk_prob);
}

TEST(Config, EosForms) {
  EXPECT_EQ(parse_edited("olmoe", [](json& j) { j["eos_token_id"] = {2, 7}; }).eos_token_ids,
            (std::vector<int64_t>{2, 7}));
  EXPECT_TRUE(parse_edited("olmoe", [](json& j) { j["eos_token_id"] = nullptr; }).eos_token_ids.empty());
}

// True when exactly one warning was made and it holds every fragment.
::testing::AssertionResult warns_once(const ModelConfig& c, std::initializer_list<std::string> fragments) {
  if (c.warnings.size() != 1) return ::testing::AssertionFailure() << c.warnings.size() << " warnings";
  for (const std::string& f : fragments)
    if (c.warnings[0].find(f) == std::string::npos)
      return ::testing::AssertionFailure() << "'" << c.warnings[0] << "' lacks '" << f << "'";
  return ::testing::AssertionSuccess();
}

// transformers loads and runs these; they are warnings naming the field, not errors.
TEST(Config, WhatTransformersRunsLoadsWithAWarning) {
  // A tiny checkpoint keeping its family's real EOS (a list here) with a small vocabulary.
  ModelConfig big_eos = parse_edited("mixtral", [](json& j) { j["eos_token_id"] = {2, 151645}; });
  EXPECT_EQ(big_eos.eos_token_ids, (std::vector<int64_t>{2, 151645}));
  EXPECT_TRUE(big_eos.is_eos(2));
  EXPECT_TRUE(warns_once(big_eos, {"mixtral/config.json", "eos_token_id", "151645", "[0, 256)"}));
  EXPECT_TRUE(warns_once(parse_edited("olmoe", [](json& j) { j["eos_token_id"] = -1; }), {"eos_token_id", "-1"}));
  // use_sliding_window where no layer slides: max_window_layers (transformers' default 28) past
  // the last layer, no window, or one as long as the context.
  for (const auto& edit : std::vector<std::function<void(json&)>>{
           [](json& j) { j.erase("layer_types"); j["sliding_window"] = 64; j.erase("max_window_layers"); },
           [](json& j) { j.erase("layer_types"); j["sliding_window"] = nullptr; j["max_window_layers"] = 0; },
           [](json& j) { j.erase("layer_types"); j["sliding_window"] = 256; j["max_window_layers"] = 0; },
           [](json& j) { j["sliding_window"] = 64; }}) {  // the fixture's layer_types: all full
    EXPECT_TRUE(warns_once(parse_edited("qwen2_moe", [&](json& j) { edit(j); j["use_sliding_window"] = true; }),
                           {"qwen2_moe/config.json", "use_sliding_window", "plain attention"}));
  }
  ModelConfig extra_dense = parse_edited("qwen2_moe", [](json& j) { j["mlp_only_layers"] = {7}; });
  EXPECT_TRUE(warns_once(extra_dense, {"qwen2_moe/config.json", "mlp_only_layers", "7"}));
  EXPECT_EQ(extra_dense.num_moe_layers(), extra_dense.num_layers);  // nothing changed
  // The fixtures themselves raise no warning.
  for (const char* family : {"mixtral", "olmoe", "qwen2_moe", "qwen3_moe"})
    EXPECT_TRUE(parse_edited(family, [](json&) {}).warnings.empty()) << family;
}

TEST(Config, AttentionOptions) {
  ModelConfig olmoe = parse_edited("olmoe", [](json& j) {
    j["attention_bias"] = true;
    j["clip_qkv"] = 8.0;
  });
  EXPECT_TRUE(olmoe.qkv_bias);
  EXPECT_TRUE(olmoe.o_bias);
  EXPECT_DOUBLE_EQ(olmoe.clip_qkv, 8.0);
  ModelConfig qwen3 = parse_edited("qwen3_moe", [](json& j) { j["attention_bias"] = true; });
  EXPECT_TRUE(qwen3.qkv_bias);
  EXPECT_TRUE(qwen3.o_bias);
  EXPECT_EQ(parse_edited("qwen3_moe", [](json& j) { j["head_dim"] = nullptr; }).head_dim, 16);
}

TEST(Config, QwenLayerKinds) {
  ModelConfig c = parse_edited("qwen3_moe", [](json& j) {
    j["decoder_sparse_step"] = 2;
    j["mlp_only_layers"] = {3};
  });
  // Layers 1 and 3 satisfy (i+1) % 2 == 0; layer 3 is forced dense.
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{false, true, false, false}));
  ModelConfig shared_off = parse_edited("qwen2_moe", [](json& j) { j["shared_expert_intermediate_size"] = 0; });
  EXPECT_FALSE(shared_off.shared_expert_gate);
}

TEST(Config, ParameterCounts) {
  ModelConfig c = load_model_config(fixture_dir("mixtral") + "/config.json");
  // embed + lm_head + final norm; per layer: 2 norms, q,k,v,o, router, 8 experts.
  int64_t per_layer = 2 * 64 + (64 * 64 + 2 * 64 * 32 + 64 * 64) + 8 * 64;
  int64_t expert = 3 * 64 * 48;
  EXPECT_EQ(c.total_params(), 2 * 256 * 64 + 64 + 4 * (per_layer + 8 * expert));
  EXPECT_EQ(c.active_params_per_token(), 2 * 256 * 64 + 64 + 4 * (per_layer + 2 * expert));
}

// The real models: total parameters exactly as transformers 5.17 counts its own model built from
// the same config, and active parameters near the published "A2.7B", "A3B", "1B" figures.
TEST(Config, RealPresetParameterCounts) {
  struct Expect {
    Family family;
    const char* preset;
    int64_t total;
    double active_b;
  };
  for (const Expect& e : {Expect{Family::Olmoe, "olmoe-1b-7b", 6919161856, 1.28},
                          Expect{Family::Qwen2Moe, "qwen1.5-moe-a2.7b", 14315784192, 2.69},
                          Expect{Family::Mixtral, "mixtral-8x7b", 46702792704, 12.9},
                          Expect{Family::Qwen3Moe, "qwen3-30b-a3b", 30532122624, 3.35}}) {
    SCOPED_TRACE(e.preset);
    ModelConfig c = parse_model_config(hf_preset_json(e.family, e.preset), e.preset);
    EXPECT_EQ(c.total_params(), e.total);
    EXPECT_NEAR(c.active_params_per_token() / 1e9, e.active_b, 0.01 * e.active_b);
  }
}

TEST(Config, HfJsonRoundTrip) {
  for (const char* family : {"mixtral", "qwen2_moe", "olmoe", "qwen3_moe"}) {
    SCOPED_TRACE(family);
    ModelConfig c = load_model_config(fixture_dir(family) + "/config.json");
    json hf = to_hf_config_json(c);
    EXPECT_TRUE(hf.contains("architectures"));
    EXPECT_EQ(hf["model_type"], family);
    EXPECT_EQ(hf["torch_dtype"], "bfloat16");
    EXPECT_TRUE(hf.contains("rope_theta"));
    EXPECT_EQ(parse_model_config(hf, "round-trip").to_json(), c.to_json());
  }
}

TEST(Config, HfJsonRefusesWhatTransformersCannotExpress) {
  ModelConfig c = load_model_config(fixture_dir("qwen2_moe") + "/config.json");
  c.qkv_bias = false;  // transformers 4.x qwen2_moe always has the bias
  EXPECT_TRUE(throws_error([&] { to_hf_config_json(c); }, {"qwen2_moe"}));
}

TEST(Config, SummaryAndJsonMentionTheEssentials) {
  ModelConfig c = load_model_config(fixture_dir("qwen2_moe") + "/config.json");
  std::string s = c.summary();
  EXPECT_NE(s.find("qwen2_moe"), std::string::npos);
  EXPECT_NE(s.find("shared expert"), std::string::npos);
  EXPECT_NE(s.find("3 MoE, 1 dense"), std::string::npos);
  EXPECT_EQ(c.to_json()["total_params"], c.total_params());
}

// Sizes far beyond any model are refused at once, before anything is allocated from them.
TEST(Config, AbsurdSizesRefusedBeforeAllocating) {
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["num_hidden_layers"] = 1000000000; },
                      {"olmoe/config.json", "'num_hidden_layers' is 1000000000", "more than"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["num_experts"] = int64_t(1) << 40; },
                      {"'num_experts' is 1099511627776"}));
  EXPECT_TRUE(rejects("mixtral", [](json& j) { j["num_local_experts"] = int64_t(1) << 40; },
                      {"'num_local_experts'"}));
  EXPECT_TRUE(rejects("olmoe", [](json& j) { j["vocab_size"] = int64_t(1) << 40; }, {"'vocab_size'"}));
}

TEST(Config, FileReadStrictly) {
  testing::TempDir dir("cfg");
  std::ofstream(dir.file("config.json")) << R"({"model_type": "olmoe", "model_type": "mixtral"})";
  EXPECT_TRUE(throws_error([&] { load_model_config(dir.file("config.json")); },
                           {"config.json", "key 'model_type' appears twice"}));
  std::remove(dir.file("config.json").c_str());
  std::filesystem::create_directory(dir.file("config.json"));
  EXPECT_TRUE(throws_error([&] { load_model_config(dir.file("config.json")); },
                           {"config.json", "cannot read the model config", "directory"}));
  std::filesystem::remove(dir.file("config.json"));
  ASSERT_EQ(mkfifo(dir.file("config.json").c_str(), 0644), 0);  // would block a plain open
  EXPECT_TRUE(throws_error([&] { load_model_config(dir.file("config.json")); }, {"config.json", "FIFO"}));
}

}  // namespace
}  // namespace moetron
