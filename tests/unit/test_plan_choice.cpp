// --plan auto by prediction (engine/plan_choice): the hardware figures a device gets, and the
// choice: the predictor's best plan that the engine's own checks accept, else the preference
// order's error.
#include <gtest/gtest.h>

#include "error_of.hpp"
#include "moetron/engine/plan_choice.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/predict/predictor.hpp"

namespace moetron {
namespace {

ModelConfig olmoe() {
  return parse_model_config(hf_preset_json(Family::Olmoe, "olmoe-1b-7b"), "olmoe-1b-7b");
}

std::vector<RequestSpec> requests(int n, int prompt, int out) {
  std::vector<RequestSpec> all(static_cast<size_t>(n));
  for (RequestSpec& r : all) {
    r.prompt_tokens.assign(static_cast<size_t>(prompt), 5);
    r.max_new_tokens = out;
  }
  return all;
}

PlanChoiceInputs inputs(const ModelConfig& c, const std::vector<RequestSpec>& reqs, int ranks,
                        int64_t memory) {
  PlanChoiceInputs in;
  in.config = &c;
  in.requests = &reqs;
  in.world_size = ranks;
  in.ranks_per_node = ranks;
  in.memory.bytes_per_rank = memory;
  in.memory.source = "--memory-per-rank";
  in.memory.storage = backend_storage("cuda");
  in.memory.run.kv_tokens = 1024;
  in.memory.run.max_step_tokens = 8192;
  in.memory.run.max_batch = 256;
  in.hardware = hardware_preset("h200");
  return in;
}

TEST(PlanChoice, DevicesGetTheirPresetByName) {
  std::string note;
  EXPECT_EQ(hardware_for_device("cuda", "NVIDIA H200", &note).name, "h200");
  EXPECT_EQ(hardware_for_device("cuda", "NVIDIA H100 80GB HBM3", &note).name, "h100");
  EXPECT_EQ(hardware_for_device("cuda", "NVIDIA A100-SXM4-80GB", &note).name, "a100");
  EXPECT_EQ(hardware_for_device("cpu", "cpu", &note).name, "cpu");
  EXPECT_TRUE(note.empty()) << note;
  EXPECT_EQ(hardware_for_device("cuda", "NVIDIA GeForce RTX 4090", &note).name, "h100");
  EXPECT_NE(note.find("RTX 4090"), std::string::npos) << note;
}

TEST(PlanChoice, WithRoomTheBestPredictedPlanWins) {
  const ModelConfig c = olmoe();
  const auto reqs = requests(64, 512, 64);
  const PlanChoiceInputs in = inputs(c, reqs, 4, 0);
  const PlanChoice choice = choose_plan_by_prediction(in);
  Workload w;
  w = workload_from_requests(reqs, w, "--prompts");
  const auto ranking = predict_plans(c, w, {4, 4, 0, 0}, RooflineCostModel(in.hardware), {});
  ASSERT_FALSE(ranking.empty());
  EXPECT_EQ(choice.plan.to_string(), ranking.front().plan.to_string());
  ASSERT_GE(choice.log.size(), 3u);
  EXPECT_NE(choice.log.back().find(" wins: "), std::string::npos) << choice.log.back();
}

TEST(PlanChoice, TheChoicePassesTheEnginesMemoryCheck) {
  const ModelConfig c = olmoe();
  const auto reqs = requests(64, 512, 64);
  // Enough for a quarter of the experts and their share of the rest, not for whole copies.
  const int64_t memory = int64_t{6} << 30;
  const PlanChoice choice = choose_plan_by_prediction(inputs(c, reqs, 4, memory));
  PlanChoiceInputs in = inputs(c, reqs, 4, memory);
  EXPECT_EQ(memory_problem(choice.plan, c, in.memory), "") << choice.plan.to_string();
  EXPECT_GT(choice.plan.ep * choice.plan.pp * choice.plan.tp, 1) << choice.plan.to_string();
}

TEST(PlanChoice, NothingFitsGivesThePreferenceOrdersError) {
  const ModelConfig c = olmoe();
  const auto reqs = requests(4, 16, 4);
  const std::string e = test::error_of([&] { choose_plan_by_prediction(inputs(c, reqs, 2, 1 << 20)); });
  EXPECT_NE(e.find("--plan auto: no plan fits on 2 ranks"), std::string::npos) << e;
}

}  // namespace
}  // namespace moetron
