// The adaptive prefill chunk (--prefill-chunk auto, engine/prefill_budget.hpp): the budget policy
// on given step costs, the step-cost model on injected step times, the option's parsing, and the
// scheduler taking the budget it is given. No clocks: every time here is made up.
#include <gtest/gtest.h>

#include "error_of.hpp"
#include "moetron/engine/decode_batches.hpp"
#include "moetron/engine/prefill_budget.hpp"
#include "moetron/engine/scheduler.hpp"
#include "scheduler_test_helpers.hpp"

namespace moetron {
namespace {

// Binary fractions, so that the budgets below are exact: a decode step of 1/2 s, 1/256 s a token.
const MeasuredStepCost kHalfSecondStep{0.5, 1.0 / 256};

TEST(AdaptiveBudget, KeepsTheStepWithinTheRatioOfADecodeStep) {
  AdaptiveChunk policy;  // ratio 2: the prefill may add one decode step's time
  EXPECT_EQ(adaptive_prefill_budget(policy, 4, kHalfSecondStep, 8192), 128);  // (2 - 1) * 0.5 * 256
  policy.itl_target_ratio = 1.5;
  EXPECT_EQ(adaptive_prefill_budget(policy, 4, kHalfSecondStep, 8192), 64);
  policy.itl_target_ratio = 3;
  EXPECT_EQ(adaptive_prefill_budget(policy, 4, kHalfSecondStep, 8192), 256);
  policy.itl_target_ratio = 2.01;  // 129.28 tokens: rounded down, never past the ratio
  EXPECT_EQ(adaptive_prefill_budget(policy, 4, kHalfSecondStep, 8192), 129);
}

TEST(AdaptiveBudget, ClampsToTheLeastChunkAndTheStepsTokens) {
  const AdaptiveChunk policy;  // min_chunk 16
  // 0.5 * 2 = 1 token: below the least chunk, which keeps prefill moving.
  EXPECT_EQ(adaptive_prefill_budget(policy, 4, MeasuredStepCost{0.5, 0.5}, 8192), 16);
  // Nearly free prefill: as much as the step holds.
  EXPECT_EQ(adaptive_prefill_budget(policy, 4, MeasuredStepCost{0.5, 1e-30}, 8192), 8192);
  EXPECT_EQ(adaptive_prefill_budget(policy, 4, kHalfSecondStep, 100), 100);
  // A step smaller than the least chunk: the step.
  EXPECT_EQ(adaptive_prefill_budget(policy, 4, MeasuredStepCost{0.5, 0.5}, 8), 8);
}

TEST(AdaptiveBudget, WithNoDecodesTakesTheWholeStep) {
  const AdaptiveChunk policy;
  EXPECT_EQ(adaptive_prefill_budget(policy, 0, kHalfSecondStep, 8192), 8192);
  EXPECT_EQ(adaptive_prefill_budget(policy, 0, std::nullopt, 8192), 8192);
}

TEST(AdaptiveBudget, StartsAtTheStatedDefaultUntilTheCostsAreKnown) {
  const AdaptiveChunk policy;
  EXPECT_EQ(policy.startup_chunk, 64);
  EXPECT_EQ(adaptive_prefill_budget(policy, 3, std::nullopt, 8192), 64);
  EXPECT_EQ(adaptive_prefill_budget(policy, 3, std::nullopt, 40), 40);
  EXPECT_EQ(adaptive_prefill_budget(policy, 3, MeasuredStepCost{0.5, 0}, 8192), 64);   // no slope
  EXPECT_EQ(adaptive_prefill_budget(policy, 3, MeasuredStepCost{-0.1, 0.01}, 8192), 64);  // no decode time
  // Step by step the start-up budget varies (x1, x2, x4), so that the slope can be fitted.
  EXPECT_EQ(adaptive_prefill_budget(policy, 3, std::nullopt, 8192, 1), 128);
  EXPECT_EQ(adaptive_prefill_budget(policy, 3, std::nullopt, 8192, 2), 256);
  EXPECT_EQ(adaptive_prefill_budget(policy, 3, std::nullopt, 8192, 3), 64);
  EXPECT_EQ(adaptive_prefill_budget(policy, 3, std::nullopt, 100, 2), 100);
}

// The start-up deadlock seen on the H200: under load every step fills its budget, so with one
// fixed start-up budget no bucket ever saw two prefill sizes. Feeding the model the steps its
// own start-up budgets make (time = 10 ms + 20 us a prefill token, 30 decodes) finds the slope
// within three steps and then sizes the budget from it.
TEST(AdaptiveBudget, StartUpBudgetsLetTheSlopeBeFitted) {
  const AdaptiveChunk policy;
  StepCostModel model;
  std::optional<MeasuredStepCost> cost;
  for (int step = 0; step < 3 && !cost; ++step) {
    const int64_t budget = adaptive_prefill_budget(policy, 30, model.estimate(30), 8192, model.observed());
    model.observe(30, budget, 0.010 + 20e-6 * static_cast<double>(budget));
    cost = model.estimate(30);
  }
  ASSERT_TRUE(cost.has_value());
  EXPECT_NEAR(cost->per_prefill_token_s, 20e-6, 1e-9);
  EXPECT_NEAR(cost->decode_s, 0.010, 1e-9);
  EXPECT_NEAR(static_cast<double>(adaptive_prefill_budget(policy, 30, cost, 8192, model.observed())), 500, 1);  // 10 ms / 20 us
}

// The model's buckets are the sizes decode steps are padded to: 1 | 2 | 3-4 | 5-8 | ...
TEST(StepCostModel, BucketsAreThePaddedBatchSizes) {
  EXPECT_EQ(decode_bucket(0), 0u);
  EXPECT_EQ(decode_bucket(1), 1u);
  EXPECT_EQ(decode_bucket(2), 2u);
  EXPECT_EQ(decode_bucket(3), 3u);
  EXPECT_EQ(decode_bucket(4), 3u);
  EXPECT_EQ(decode_bucket(5), 4u);
  EXPECT_EQ(decode_bucket(8), 4u);
  EXPECT_EQ(decode_bucket(9), 5u);
  EXPECT_EQ(decode_bucket(256), 9u);
  EXPECT_EQ(decode_bucket(257), 10u);
}

// A batch's bucket names the smallest recorded size that holds it (DecodeGraphs replays that
// one), whatever the largest batch.
TEST(StepCostModel, ABatchsBucketIsTheDecodeStepItRunsIn) {
  for (int64_t max_batch = 1; max_batch <= 80; ++max_batch) {
    const std::vector<int64_t> sizes = padded_decode_batches(max_batch);
    EXPECT_EQ(sizes.back(), max_batch);
    for (int64_t d = 1; d <= max_batch; ++d) {
      const size_t b = decode_bucket(d);
      ASSERT_TRUE(b >= 1 && b <= sizes.size()) << d << " of " << max_batch;
      EXPECT_GE(sizes[b - 1], d) << d << " of " << max_batch;
      if (b >= 2) {
        EXPECT_LT(sizes[b - 2], d) << d << " of " << max_batch;
      }
    }
  }
  EXPECT_EQ(padded_decode_batches(48), (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 48}));
  EXPECT_NE(test::error_of([] { padded_decode_batches(0); }).find("at least 1, got 0"), std::string::npos);
}

// A batch of 5 runs padded to 8: its decode time is the 8-batch's, not the 4-batch's.
TEST(StepCostModel, AStepOfFiveDecodesCostsWhatEightCost) {
  StepCostModel model;
  model.observe(0, 100, 0.011);
  model.observe(0, 200, 0.021);  // 0.1 ms a prefill token
  model.observe(4, 0, 0.010);
  model.observe(8, 0, 0.020);
  model.observe(5, 0, 0.020);
  EXPECT_NEAR(model.estimate(4)->decode_s, 0.010, 1e-12);
  EXPECT_NEAR(model.estimate(5)->decode_s, 0.020, 1e-12);
  EXPECT_NEAR(model.estimate(8)->decode_s, 0.020, 1e-12);
}

// Steps of t = 10 ms + 0.1 ms per prefill token at a decode batch of 4.
TEST(StepCostModel, FitsTheDecodeTimeAndThePerTokenCost) {
  StepCostModel model;
  EXPECT_FALSE(model.estimate(4)) << "nothing seen: start-up";
  model.observe(4, 0, 0.010);
  EXPECT_FALSE(model.estimate(4)) << "decode-only steps alone give no per-token cost";
  model.observe(4, 100, 0.020);
  model.observe(3, 50, 0.015);
  const std::optional<MeasuredStepCost> c = model.estimate(4);
  ASSERT_TRUE(c);
  EXPECT_NEAR(c->decode_s, 0.010, 1e-12);
  EXPECT_NEAR(c->per_prefill_token_s, 1e-4, 1e-12);
  EXPECT_NEAR(model.estimate(3)->decode_s, 0.010, 1e-12) << "the same bucket";
  EXPECT_NEAR(model.estimate(100)->decode_s, 0.010, 1e-12) << "a larger batch unseen: the nearest smaller";
  EXPECT_FALSE(model.estimate(2)) << "no smaller bucket seen";
  EXPECT_FALSE(model.estimate(0));
  // The budget from the fit: (2 - 1) * 10 ms / 0.1 ms = 100 tokens (within rounding).
  const int64_t budget = adaptive_prefill_budget(AdaptiveChunk{}, 4, c, 8192);
  EXPECT_GE(budget, 99);
  EXPECT_LE(budget, 100);
}

// Under load every step may take prefill: the slope comes from prefill-only steps of different
// sizes, and a bucket's decode time from its mixed steps.
TEST(StepCostModel, LearnsFromStepsThatAllTakePrefill) {
  StepCostModel model;
  model.observe(0, 100, 0.011);
  model.observe(0, 200, 0.021);
  model.observe(16, 64, 0.0300);  // 30 ms with 64 tokens: a decode step of 23.6 ms
  const std::optional<MeasuredStepCost> c = model.estimate(20);
  ASSERT_TRUE(c);
  EXPECT_NEAR(c->per_prefill_token_s, 1e-4, 1e-12);
  EXPECT_NEAR(c->decode_s, 0.0236, 1e-9);
}

// Newer steps weigh more: the decode time follows a change (e.g. longer contexts).
TEST(StepCostModel, ForgetsOldSteps) {
  StepCostModel model(0.5);
  model.observe(0, 100, 0.011);
  model.observe(0, 200, 0.021);
  for (int i = 0; i < 40; ++i) model.observe(4, 0, 0.010);
  for (int i = 0; i < 40; ++i) model.observe(4, 0, 0.020);
  EXPECT_NEAR(model.estimate(4)->decode_s, 0.020, 1e-9);
}

// Timing noise that makes prefill look free or cheaper than nothing gives no slope, and once
// one is known, keeps it.
TEST(StepCostModel, KeepsTheLastSlopeAgainstNoise) {
  StepCostModel model;
  model.observe(8, 10, 0.5);
  model.observe(8, 60, 0.0001);  // more tokens, much less time
  EXPECT_FALSE(model.estimate(8));
  model.observe(0, 100, 0.011);
  model.observe(0, 200, 0.021);  // +0.49 of covariance here, -12 in bucket 4
  EXPECT_FALSE(model.estimate(8));
  StepCostModel known;
  known.observe(0, 100, 0.011);
  known.observe(0, 200, 0.021);
  known.observe(8, 10, 0.5);
  known.observe(8, 60, 0.0001);
  ASSERT_TRUE(known.estimate(8));
  EXPECT_NEAR(known.estimate(8)->per_prefill_token_s, 1e-4, 1e-12);
}

// Steps whose prefill differs by a few tokens differ in time by timing noise: they set no slope,
// however many they are, and one well-spread step then does.
TEST(StepCostModel, NearIdenticalStepsDoNotSetTheSlope) {
  const auto step_s = [](int64_t prefill) { return 0.010 + 1e-4 * static_cast<double>(prefill); };
  StepCostModel model;
  for (int i = 0; i < 40; ++i) {
    const int64_t prefill = 100 + 2 * (i % 2);  // 100, 102, 100, ...
    model.observe(4, prefill, step_s(prefill));
    EXPECT_FALSE(model.estimate(4)) << "after step " << i;
  }
  model.observe(4, 110, step_s(110));  // ten tokens off: still too little
  EXPECT_FALSE(model.estimate(4));
  model.observe(4, 200, step_s(200));
  ASSERT_TRUE(model.estimate(4));
  EXPECT_NEAR(model.estimate(4)->per_prefill_token_s, 1e-4, 1e-12);
  EXPECT_NEAR(model.estimate(4)->decode_s, 0.010, 1e-12);
}

TEST(PrefillChunkOption, TakesAutoOrAnIntegerAtLeastZero) {
  EXPECT_EQ(parse_prefill_chunk("auto"), kPrefillChunkAuto);
  EXPECT_EQ(parse_prefill_chunk("0"), 0);
  EXPECT_EQ(parse_prefill_chunk("256"), 256);
  EXPECT_EQ(prefill_chunk_text(kPrefillChunkAuto), "auto");
  EXPECT_EQ(prefill_chunk_text(256), "256");
  for (const char* bad : {"-3", "", "1.5", "12x", "Auto", "99999999999999999999"}) {
    const std::string message = test::error_of([&] { parse_prefill_chunk(bad); });
    EXPECT_NE(message.find("--prefill-chunk must be auto or an integer >= 0"), std::string::npos) << bad;
    EXPECT_NE(message.find(std::string("got '") + bad + "'"), std::string::npos) << message;
  }
}

// The scheduler asks for the budget once the step's decodes are in, and cuts the chunks by it.
TEST(AdaptiveBudget, TheSchedulerCutsChunksByTheBudgetItIsGiven) {
  std::vector<Sequence> seqs = {make_seq(0, 10, 4), make_seq(1, 9, 2)};
  seqs[1].state = Sequence::State::Pending;  // arrives after the first step
  SchedulerLimits limits;
  limits.block_size = 4;
  limits.prefill_chunk = kPrefillChunkAuto;
  Scheduler sched({&seqs[0], &seqs[1]}, 100, limits);
  std::vector<int64_t> asked;
  const Scheduler::PrefillBudget budget = [&](int64_t decodes) {
    asked.push_back(decodes);
    return decodes == 0 ? limits.max_batch_tokens : 4;
  };
  std::vector<std::vector<Entry>> steps;
  std::vector<int64_t> budgets;
  while (!sched.done() && steps.size() < 20) {
    const auto step = sched.next_step(budget);
    steps.push_back(entries(step));
    budgets.push_back(sched.prefill_budget());
    sched.complete_step(step, std::vector<int32_t>(step.size(), 5), {}, 0, 0.0, {});
    if (steps.size() == 1) sched.arrive(&seqs[1]);
  }
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_EQ(steps[0], (std::vector<Entry>{{0, 0, 10, true, true}}));
  EXPECT_EQ(steps[1], (std::vector<Entry>{{0, 10, 1, false, true}, {1, 0, 4, true, false}}));
  EXPECT_EQ(steps[2], (std::vector<Entry>{{0, 11, 1, false, true}, {1, 4, 4, true, false}}));
  EXPECT_EQ(steps[3], (std::vector<Entry>{{0, 12, 1, false, true}, {1, 8, 1, true, true}}));
  EXPECT_EQ(steps[4], (std::vector<Entry>{{1, 9, 1, false, true}}));
  EXPECT_EQ(asked, (std::vector<int64_t>{0, 1, 1, 1, 1}));
  EXPECT_EQ(budgets, (std::vector<int64_t>{8192, 4, 4, 4, 4}));
}

TEST(AdaptiveBudget, FixedAndWholePromptSchedulersReportTheirBudget) {
  std::vector<Sequence> seqs = {make_seq(0, 10, 1)};
  SchedulerLimits limits;
  limits.prefill_chunk = 7;
  Scheduler fixed({&seqs[0]}, 100, limits);
  fixed.next_step();
  EXPECT_EQ(fixed.prefill_budget(), 7);
  std::vector<Sequence> more = {make_seq(0, 10, 1)};
  Scheduler whole({&more[0]}, 100, SchedulerLimits{});
  whole.next_step();
  EXPECT_EQ(whole.prefill_budget(), 0);
}

}  // namespace
}  // namespace moetron
