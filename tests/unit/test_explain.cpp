// `moetron plan --explain`: step_cost's traced ops sum to the step it reports, field by field,
// for every kind of plan and step; the cost models say where each answer came from; a plan that
// is not valid or does not fit is refused naming --explain.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "moetron/bench/profile.hpp"
#include "moetron/bench/time_curve.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/predict/explain.hpp"
#include "moetron/predict/plan_geometry.hpp"
#include "moetron/predict/profile_cost_model.hpp"
#include "moetron/predict/roofline_cost_model.hpp"
#include "predictor_test_helpers.hpp"
#include "../common/moe_config.hpp"

namespace moetron {
namespace {

using predictor_test::preset;

Workload workload() {  // perf/validate_predictor.py's section (b) at 16 ranks
  Workload w;
  w.prompt_tokens = w.requests = w.max_batch = 64;
  w.output_tokens = 12;
  w.max_batch_tokens = 64 * 64;
  return w;
}

// Every field alike (relative, for fp rounding in the order of the sums).
void expect_same_fields(const StepCost& a, const StepCost& b) {
  const auto near = [](double x, double y, const char* field) {
    EXPECT_NEAR(x, y, 1e-12 * std::max(1.0, std::abs(y)) + 1e-15) << field;
  };
  near(a.compute_s, b.compute_s, "compute_s");
  near(a.kernel_overhead_s, b.kernel_overhead_s, "kernel_overhead_s");
  near(a.tp_comm_s, b.tp_comm_s, "tp_comm_s");
  near(a.expert_comm_s, b.expert_comm_s, "expert_comm_s");
  near(a.pipeline_comm_s, b.pipeline_comm_s, "pipeline_comm_s");
  near(a.bubble_s, b.bubble_s, "bubble_s");
  near(a.host_sync_s, b.host_sync_s, "host_sync_s");
  near(a.imbalance_s, b.imbalance_s, "imbalance_s");
  near(a.host_s, b.host_s, "host_s");
  near(a.emulation_s, b.emulation_s, "emulation_s");
  near(a.sharing_s, b.sharing_s, "sharing_s");
}

// Skewed loads: expert 0 of every MoE layer takes half of each token's picks.
ExpertShares skewed(const ModelConfig& c) {
  ExpertShares shares;
  for (int64_t l = 0; l < c.num_moe_layers(); ++l) {
    std::vector<double> row(static_cast<size_t>(c.num_experts), (c.top_k - 0.5) / static_cast<double>(c.num_experts - 1));
    row[0] = 0.5;
    shares.push_back(row);
  }
  return shares;
}

TEST(PredictorExplain, TracedOpsSumToTheStepOfEveryKindOfPlanAndStep) {
  const RooflineCostModel cost(hardware_preset("h200"));
  for (const ModelConfig& c : {preset(Family::Olmoe, "olmoe-1b-7b"), preset(Family::Qwen2Moe, "qwen1.5-moe-a2.7b"),
                               preset(Family::Mixtral, "mixtral-8x7b")}) {
    int plans = 0;
    for (const Plan& plan : {Plan{}, Plan{1, 8, 1, 1}, Plan{1, 1, 4, 4}, Plan{1, 2, 4, 8}, Plan{2, 2, 1, 1},
                             Plan{2, 1, 2, 2}, Plan{4, 2, 2, 1}}) {
      if (!plan_problem(plan, c).empty()) continue;
      ++plans;
      const PlanGeometry g = plan_geometry(c, plan, 8);
      // A recorded decode, an eager one whose launches overlap (an emulated rank's), an eager
      // one summed (the CPU's), prefill; micro-batches of unequal size under pp.
      const std::vector<StepShape> shapes = {{13, 1, 70, false, plan.pp, true, true, 2, true},
                                             {13, 1, 70, false, plan.pp, false, true, 2, true},
                                             {13, 1, 70, false, plan.pp, false, false, 4, false},
                                             {3, 64, 64, true, plan.pp, false, true, 2, false}};
      for (const ExpertShares& shares : {ExpertShares{}, skewed(c)}) {
        for (const StepShape& shape : shapes) {
          SCOPED_TRACE(std::string(family_name(c.family)) + " " + plan.to_string() + (shape.prefill ? " prefill" : " decode") +
                       (shape.launches_overlap ? " pipelined" : "") + (shares.empty() ? "" : " skewed"));
          StepTrace trace;
          const StepCost traced = step_cost(g, shares, shape, cost, &trace);
          const StepCost plain = step_cost(g, shares, shape, cost);
          // Tracing does not change the price, to the bit.
          EXPECT_EQ(traced.total_s(), plain.total_s());
          EXPECT_EQ(traced.emulation_s, plain.emulation_s);
          ASSERT_GT(trace.ops.size(), 20u);
          expect_same_fields(reported_sum(trace), traced);
          for (const PricedOp& op : trace.ops) EXPECT_FALSE(op.source.empty() && op.kernels > 0) << op.name;
          if (plan.world_size() > 1) {
            EXPECT_GT(traced.emulation_s, 0);
          }
        }
      }
    }
    EXPECT_GE(plans, 6) << family_name(c.family);
  }
}

TEST(PredictorExplain, ExplainsThePredictionsOwnSteps) {
  const RooflineCostModel cost(hardware_preset("h200"));
  const ModelConfig c = preset(Family::Qwen2Moe, "qwen1.5-moe-a2.7b");
  const Cluster cluster{16, 8, 141LL << 30, 0};
  PredictorOptions options;
  options.backend = "cuda";
  for (const std::string text : {"pp=1,tp=16,dp=1,ep=1", "tp=4,dp=4,ep=4", "pp=2,tp=8", "dp=16,ep=4"}) {
    SCOPED_TRACE(text);
    const Plan plan = explained_plan(text, c, cluster);
    const PlanExplanation e = explain_plan(c, plan, workload(), cluster, cost, options);
    const PlanPrediction alone = predict_plan(c, plan, workload(), cluster, cost, options);
    EXPECT_EQ(e.prediction.decode.total_s(), alone.decode.total_s());
    expect_same_fields(reported_sum(e.decode), e.prediction.decode);
    expect_same_fields(reported_sum(e.prefill), e.prediction.prefill);
    const std::string text_out = format_explanation(e);
    EXPECT_NE(text_out.find("--emulate-rank 15 --emulate-world 16"), std::string::npos) << text_out;
    EXPECT_NE(text_out.find("decode step: "), std::string::npos);
    EXPECT_NE(text_out.find("prefill step: "), std::string::npos);
    EXPECT_NE(text_out.find("expert call"), std::string::npos);
  }
}

TEST(PredictorExplain, RefusesAPlanThatIsNotValidOrDoesNotFitNamingExplain) {
  const RooflineCostModel cost(hardware_preset("h200"));
  const ModelConfig c = preset(Family::Mixtral, "mixtral-8x7b");
  const Cluster cluster{16, 8, 141LL << 30, 0};
  const auto refusal = [&](const std::string& text) {
    return test::error_of([&] { explained_plan(text, c, cluster); });
  };
  EXPECT_NE(refusal("tp=16,xp=2").find("--explain: unknown factor 'xp'"), std::string::npos) << refusal("tp=16,xp=2");
  EXPECT_NE(refusal("").find("--explain: empty value"), std::string::npos);
  EXPECT_NE(refusal("tp=8").find("--explain pp=1,tp=8,dp=1,ep=1 has 8 ranks (pp x tp x dp), the cluster --ranks 16"),
            std::string::npos)
      << refusal("tp=8");
  EXPECT_EQ(refusal("tp=16,dp=1,ep=8"), "");  // valid
  EXPECT_EQ(refusal("dp=16,ep=16"), "--explain pp=1,tp=1,dp=16,ep=16: the 8 experts do not split into ep=16 equal sets");
  // Valid, but too large for a rank of 1 GiB.
  const Cluster small{16, 8, 1LL << 30, 0};
  const std::string does_not_fit = test::error_of([&] {
    explain_plan(c, explained_plan("pp=1,tp=2,dp=8,ep=8", c, small), workload(), small, cost, {});
  });
  EXPECT_NE(does_not_fit.find("--explain pp=1,tp=2,dp=8,ep=8 is not feasible on this cluster: stage 0 needs"),
            std::string::npos)
      << does_not_fit;
}

TEST(PredictorExplain, TimeCurvesSayHowTheyReadASize) {
  const TimeCurve curve({4, 16, 64}, {1e-6, 2e-6, 8e-6});
  EXPECT_EQ(curve.reading(16, "m"), "m 16 measured");
  EXPECT_EQ(curve.reading(32, "m"), "m 32 interpolated 16..64");
  EXPECT_EQ(curve.reading(100, "m"), "m 100 extrapolated past 64 (linear)");
  EXPECT_EQ(curve.reading(2, "m"), "m 2 below 4 (its time)");
  TimeSurface surface;
  surface.add(1, curve);
  surface.add(8, curve);
  EXPECT_EQ(surface.reading(16, 4, "rows", "experts"), "rows 16 measured, experts 4 interpolated 1..8");
}

// A profile answers from its tables with the shape it used; what it lacks, from the roofline.
TEST(PredictorExplain, AProfileNotesTheTableShapeAndReadingOfEachAnswer) {
  HardwareProfile p;
  p.table(tables::kKernelGap).add({0}, 1, {2e-6, 2e-6, 2e-6});
  p.table(tables::kGemm).add({1024, 512}, 1, {1e-5, 1e-5, 1e-5});
  p.table(tables::kGemm).add({1024, 512}, 256, {4e-5, 4e-5, 4e-5});
  p.table(tables::kHbmCopy).add({1}, 1024, {3e-6, 3e-6, 3e-6});
  p.table(tables::kHbmCopy).add({1}, 4096, {5e-6, 5e-6, 5e-6});
  const RooflineCostModel roofline(hardware_preset("h200"));
  const ProfileCostModel cost(p, roofline);
  std::string note;
  cost.attach_source_note(&note);
  cost.gemm_s(64, 1024, 512);
  EXPECT_EQ(note, "gemm [1024,512]: m 64 interpolated 1..256");
  cost.gemm_s(512, 512, 512);
  EXPECT_EQ(note, "gemm nearest [1024,512] x0.5: m 512 extrapolated past 256 (linear)");
  cost.copy_s(1024);
  EXPECT_EQ(note, "hbm_copy: bytes r+w 2048 interpolated 1024..4096");
  cost.allreduce_s(1024, 4, LinkScope::IntraNode);
  EXPECT_EQ(note, "roofline, link inside a node");
  cost.memory_bound_s(1 << 20);
  EXPECT_EQ(note, "roofline, HBM-bound");
  cost.attach_source_note(nullptr);
  note.clear();
  cost.gemm_s(64, 1024, 512);
  EXPECT_EQ(note, "");  // detached: nothing noted
}

}  // namespace
}  // namespace moetron
