// The ceiling (predictor.hpp, assumption 14; predict/plan_costs.hpp): its figures take the rates
// of the profile's fastest kernels and drop the kernel gaps, it prices no measured kernel above its
// time, it prices the estimate's own steps, it is never below the estimate's throughput when both rest on the roofline, it stays
// below what the engine measured, and it reaches the prediction file and the run's /predictions.
#include <gtest/gtest.h>

#include "../common/fixtures_root.hpp"
#include "moetron/engine/plan_choice.hpp"
#include "moetron/io/hdf5.hpp"
#include "moetron/model/config.hpp"
#include "moetron/predict/plan_costs.hpp"
#include "moetron/predict/prediction_file.hpp"
#include "moetron/predict/predictor.hpp"
#include "model_test_helpers.hpp"
#include "predictor_test_helpers.hpp"

namespace moetron {
namespace {

using predictor_test::preset;
using predictor_test::small_workload;

Measurement at(double seconds) { return {seconds, seconds, seconds}; }

// A profile whose fastest points beat the h200 preset (`faster`) or run well below it: a large
// GEMM at `gemm_rate`, a device copy at `hbm_rate`, an all-reduce of 8 ranks inside a node at
// `busbw`; a small GEMM slower in both FLOPs and bytes.
HardwareProfile profile_with(bool faster) {
  HardwareProfile p;
  const double gemm_rate = faster ? 900e12 : 300e12, hbm_rate = faster ? 5e12 : 2e12, busbw = faster ? 600e9 : 100e9;
  const int64_t m = 8192, n = 4096, k = 4096;
  p.table(tables::kGemm).add({n, k}, 16, at(2.0 * 16 * n * k / 10e12));  // 33.8 MB at ~0.6 TB/s
  p.table(tables::kGemm).add({n, k}, m, at(2.0 * m * n * k / gemm_rate));
  p.table(tables::kHbmCopy).add({1}, int64_t{1} << 30, at(static_cast<double>(int64_t{1} << 30) / hbm_rate));
  // 8 ranks inside a node: busbw = 2 (n - 1) / n bytes / time.
  const int64_t bytes = int64_t{256} << 20;
  p.table(tables::kAllreduce).add({8, 0}, 1024, at(20e-6));
  p.table(tables::kAllreduce).add({8, 0}, bytes, at(2.0 * 7 / 8 * static_cast<double>(bytes) / busbw));
  return p;
}

TEST(PlanCosts, CeilingFiguresTakeTheMachinesOwnRatesAndNoKernelGaps) {
  const HardwareFigures h200 = hardware_preset("h200");
  const HardwareFigures plain = ceiling_figures(h200, nullptr);
  EXPECT_EQ(plain.launch_s, 0);
  EXPECT_EQ(plain.graph_node_s, 0);
  EXPECT_EQ(plain.gemm_flops, h200.gemm_flops);
  EXPECT_EQ(plain.hbm_bytes_per_s, h200.hbm_bytes_per_s);
  EXPECT_EQ(plain.memory_bytes, h200.memory_bytes);

  const HardwareProfile fast = profile_with(true);
  const HardwareFigures raised = ceiling_figures(h200, &fast);
  EXPECT_NEAR(raised.gemm_flops, 900e12, 1e9);
  EXPECT_NEAR(raised.hbm_bytes_per_s, 5e12, 1e7);
  EXPECT_NEAR(raised.intra.bytes_per_s, 600e9, 1e6);
  EXPECT_EQ(raised.inter.bytes_per_s, h200.inter.bytes_per_s);  // no collective across nodes measured
  // 20 us over ceil(log2 8) = 3 hops is above the preset's 2 us: the preset's latency stays.
  EXPECT_EQ(raised.intra.latency_s, h200.intra.latency_s);

  // Slower than the preset: the machine's own kernels set the compute rates (a bound of what they
  // did there); the links only ever move toward faster (a latency and a bandwidth term are summed).
  const HardwareProfile slow = profile_with(false);
  const HardwareFigures own = ceiling_figures(h200, &slow);
  EXPECT_NEAR(own.gemm_flops, 300e12, 1e8);
  EXPECT_NEAR(own.hbm_bytes_per_s, 2e12, 1e6);
  EXPECT_EQ(own.intra.bytes_per_s, h200.intra.bytes_per_s);
}

// Priced at the ceiling's figures, no measured point of the profile takes longer than it was
// measured to: the fastest kernel sets each rate, the others are slower than it.
TEST(PlanCosts, CeilingPricesEveryMeasuredKernelAtMostItsTime) {
  HardwareProfile p = profile_with(false);
  p.table(tables::kMoeExperts).add({2048, 1024, 8}, 64, at(90e-6));
  p.table(tables::kAttentionDecode).add({16, 4, 128, 512}, 32, at(12e-6));
  p.table(tables::kMemoryBound).add({0}, int64_t{32} << 20, at(6e-6));  // in the 50 MiB L2: 5.6 TB/s
  const RooflineCostModel ceiling(ceiling_figures(hardware_preset("h200"), &p));
  // Beyond the cache the 1 GiB copy sets the rate (2 TB/s), within it the cached kernel.
  EXPECT_NEAR(ceiling.figures().hbm_bytes_per_s, 2e12, 1e6);
  EXPECT_NEAR(ceiling.figures().cache_bytes_per_s, static_cast<double>(int64_t{32} << 20) / 6e-6, 1e6);
  EXPECT_LE(ceiling.memory_bound_s(int64_t{1} << 30), static_cast<double>(int64_t{1} << 30) / 2e12 * (1 + 1e-12));
  EXPECT_LE(ceiling.gemm_s(16, 4096, 4096), 2.0 * 16 * 4096 * 4096 / 10e12 * (1 + 1e-12));
  EXPECT_LE(ceiling.gemm_s(8192, 4096, 4096), 2.0 * 8192 * 4096 * 4096 / 300e12 * (1 + 1e-12));
  EXPECT_LE(ceiling.grouped_gemm_s(64, 8, 2 * 1024, 2048, 512) + ceiling.grouped_gemm_s(64, 8, 2048, 1024, 512),
            90e-6 * (1 + 1e-12));
  EXPECT_LE(ceiling.attention_s(32, 512, 16, 4, 128, false), 12e-6 * (1 + 1e-12));
  EXPECT_LE(ceiling.memory_bound_s(int64_t{32} << 20), 6e-6 * (1 + 1e-12));

  // A device without a cache figure: every byte at the fastest rate seen.
  HardwareFigures no_cache = hardware_preset("h200");
  no_cache.cache_bytes = 0;
  const HardwareFigures flat = ceiling_figures(no_cache, &p);
  EXPECT_EQ(flat.cache_bytes_per_s, 0);
  EXPECT_NEAR(flat.hbm_bytes_per_s, static_cast<double>(int64_t{32} << 20) / 6e-6, 1e6);
}

TEST(PlanCosts, EstimateIsTheProfilesWhereThereIsOne) {
  const HardwareProfile p = profile_with(false);
  const PlanCosts with(hardware_preset("h200"), &p), without(hardware_preset("h200"), nullptr);
  ASSERT_NE(with.measured(), nullptr);
  EXPECT_EQ(&with.estimate(), with.measured());
  EXPECT_EQ(without.measured(), nullptr);
  EXPECT_EQ(&without.estimate(), &without.roofline());
  EXPECT_EQ(with.ceiling().figures().graph_node_s, 0);
}

// Both on the roofline, the ceiling is the estimate without its kernel gaps: a recorded decode
// step exactly so, and every plan's throughput at least the estimate's.
TEST(PlanCosts, CeilingPricesTheEstimatesStepsWithoutTheirGaps) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const HardwareFigures f = hardware_preset("h200");
  const PlanCosts costs(f, nullptr);
  PredictorOptions options;
  options.backend = "cuda";
  options.ceiling = &costs.ceiling();
  Workload w;
  const Cluster cluster{8, 8, f.memory_bytes, f.reserved_bytes};
  const std::vector<PlanPrediction> ranking = predict_plans(c, w, cluster, costs.estimate(), options);
  ASSERT_FALSE(ranking.empty());
  int recorded = 0;
  for (const PlanPrediction& p : ranking) {
    if (!p.fits) continue;
    ASSERT_TRUE(p.ceiling.known()) << p.plan.to_string();
    EXPECT_GE(p.ceiling.output_tokens_per_s, p.output_tokens_per_s) << p.plan.to_string();
    EXPECT_GE(p.ceiling.decode_tokens_per_s, p.decode_tokens_per_s) << p.plan.to_string();
    EXPECT_LE(p.ceiling.prefill.total_s(), p.prefill.total_s()) << p.plan.to_string();
    EXPECT_NEAR(p.ceiling.decode.kernel_overhead_s, 0, 1e-15) << p.plan.to_string();  // rounding of the eager pipeline's sums
    if (p.decode_shape.recordable) {
      ++recorded;
      EXPECT_NEAR(p.ceiling.decode.total_s(), p.decode.total_s() - p.decode.kernel_overhead_s,
                  1e-12 + 1e-9 * p.decode.total_s())
          << p.plan.to_string();
    }
  }
  EXPECT_GT(recorded, 0);

  // Without a ceiling model none is priced.
  const PlanPrediction bare = predict_plan(c, Plan{}, w, {1, 1, f.memory_bytes, f.reserved_bytes}, costs.estimate(), {});
  EXPECT_FALSE(bare.ceiling.known());
}

// With arrivals the ceiling's throughput is capped by what arrives, as the estimate's is.
TEST(PlanCosts, CeilingOfAnArrivalRateIsWhatArrives) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const HardwareFigures f = hardware_preset("h100");
  const PlanCosts costs(f, nullptr);
  PredictorOptions options;
  options.ceiling = &costs.ceiling();
  Workload w;
  w.arrival_rate = 10;  // 1,280 tok/s
  const PlanPrediction p = predict_plan(c, Plan{}, w, {1, 1, f.memory_bytes, f.reserved_bytes}, costs.estimate(), options);
  EXPECT_DOUBLE_EQ(p.ceiling.output_tokens_per_s, 1280);
  EXPECT_LE(p.ceiling.decode.total_s(), p.decode.total_s());
}

// The whole-model decode steps perf/bench.py measured on one H200 (twenty-fourth session,
// perf/RESULTS.md, 512-token prompts): the ceiling at the preset's figures stays below every one.
TEST(PlanCosts, CeilingStaysBelowWhatTheEngineMeasured) {
  struct Measured {
    Family family;
    const char* preset;
    std::vector<std::pair<int64_t, double>> decode_ms;  // batch, step
  };
  const Measured runs[] = {
      {Family::Qwen2Moe, "qwen1.5-moe-a2.7b", {{1, 2.25}, {8, 4.65}, {32, 7.95}, {64, 9.60}, {128, 12.99}, {256, 17.02}}},
      {Family::Mixtral, "mixtral-8x7b", {{1, 7.85}, {8, 21.68}, {32, 24.90}, {64, 27.87}, {128, 33.48}, {256, 36.31}}},
  };
  const PlanCosts costs(hardware_preset("h200"), nullptr);
  for (const Measured& m : runs) {
    const ModelConfig c = preset(m.family, m.preset);
    const PlanGeometry g = plan_geometry(c, Plan{}, 1);
    for (const auto& [batch, ms] : m.decode_ms) {
      const double ceiling = step_cost(g, {}, {batch, 1, 536, false, 1, true, true}, costs.ceiling()).total_s() * 1e3;
      EXPECT_LE(ceiling, ms) << m.preset << " batch " << batch;
      EXPECT_GT(ceiling, ms / 2) << m.preset << " batch " << batch << ": the engine reaches 51-94% of it";
    }
  }
}

TEST(PlanCosts, CeilingReachesThePredictionFileAndTheRunsRecords) {
  testing::TempDir dir("plan-costs");
  const ModelConfig c = load_model_config(test::fixture_dir("olmoe") + "/config.json");
  const PlanCosts costs(hardware_preset("cpu"), nullptr);
  PredictorOptions options;
  options.ceiling = &costs.ceiling();
  const std::vector<PlanPrediction> ranking = predict_plans(c, small_workload(), {2, 2, int64_t{1} << 30, 0}, costs.estimate(), options);
  ASSERT_GE(ranking.size(), 2u);
  const std::string path = dir.file("plans.h5");
  write_predictions(path, ranking, {});
  const auto n = static_cast<int64_t>(ranking.size());
  EXPECT_EQ(read_dims(path, "/plans/ceiling_decode_parts"), (std::vector<int64_t>{n, 11}));
  EXPECT_EQ(read_dims(path, "/plans/ceiling_prefill_parts"), (std::vector<int64_t>{n, 11}));
  EXPECT_EQ(read_float64(path, "/plans/ceiling_output_tokens_per_s")[1], ranking[1].ceiling.output_tokens_per_s);
  EXPECT_EQ(read_float64(path, "/plans/ceiling_decode_tokens_per_s")[0], ranking[0].ceiling.decode_tokens_per_s);
  EXPECT_EQ(read_float64(path, "/plans/ceiling_decode_parts")[0], ranking[0].ceiling.decode.compute_s);

  PlanRanking predicted;
  predicted.ranking = ranking;
  const PlanPredictions records = prediction_records(predicted, ranking[0].plan, "");
  ASSERT_EQ(records.candidates.size(), ranking.size());
  EXPECT_EQ(records.candidates[1].ceiling_output_tokens_per_s, ranking[1].ceiling.output_tokens_per_s);
  EXPECT_EQ(records.candidates[1].ceiling_decode_step_s, ranking[1].ceiling.decode.total_s());
  EXPECT_GT(records.candidates[1].ceiling_output_tokens_per_s, 0);
}

}  // namespace
}  // namespace moetron
