// The arithmetic behind `moetron run --measure-gpu-idle`: attributing GPU intervals to steps,
// the union of overlapping intervals, and the decode-step summary and its log line.
#include <gtest/gtest.h>

#include "moetron/backend/idle_math.hpp"

namespace moetron {
namespace {

TEST(GpuIdleMath, GapsBetweenKernelsAreIdleWithinTheStep) {
  // Window 0..1000; kernels 100..300 and 500..700: busy 400 over a span of 600.
  const std::vector<StepWindow> steps = {{0, 1000, true}};
  const auto idle = measure_step_idle(steps, {{100, 300}, {500, 700}});
  ASSERT_EQ(idle.size(), 1u);
  EXPECT_EQ(idle[0].kernels, 2);
  EXPECT_EQ(idle[0].busy_ns, 400u);
  EXPECT_DOUBLE_EQ(idle[0].within_idle, 200.0 / 600.0);
  EXPECT_DOUBLE_EQ(idle[0].step_idle, 600.0 / 1000.0);
}

TEST(GpuIdleMath, OverlappingIntervalsCountOnce) {
  // 100..400 and 200..300 (inside it) and 350..500 (overlapping its end): one run 100..500.
  // The copy adds busy time but is not a kernel.
  const std::vector<StepWindow> steps = {{0, 1000, true}};
  const auto idle = measure_step_idle(steps, {{350, 500}, {100, 400}, {200, 300, false}});
  EXPECT_EQ(idle[0].kernels, 2);
  EXPECT_EQ(idle[0].busy_ns, 400u);
  EXPECT_DOUBLE_EQ(idle[0].within_idle, 0.0);
  EXPECT_DOUBLE_EQ(idle[0].step_idle, 0.6);
}

TEST(GpuIdleMath, IntervalsGoToTheStepHoldingTheirStart) {
  // Two steps with a host gap between them; work in the gap (warm-up, capture) is dropped, and
  // work that runs past its step's end is clipped there.
  const std::vector<StepWindow> steps = {{100, 200, false}, {300, 400, true}};
  const auto idle = measure_step_idle(
      steps, {{50, 90}, {150, 250}, {250, 260}, {300, 350}, {390, 420}, {500, 600}});
  ASSERT_EQ(idle.size(), 2u);
  EXPECT_EQ(idle[0].kernels, 1);
  EXPECT_EQ(idle[0].busy_ns, 50u);  // 150..200 after clipping
  EXPECT_EQ(idle[1].kernels, 2);
  EXPECT_EQ(idle[1].busy_ns, 60u);  // 300..350 and 390..400
  EXPECT_DOUBLE_EQ(idle[1].within_idle, 40.0 / 100.0);
  EXPECT_DOUBLE_EQ(idle[1].step_idle, 40.0 / 100.0);
}

TEST(GpuIdleMath, StepWithoutActivityIsAllIdle) {
  const auto idle = measure_step_idle({{0, 100, true}}, {});
  EXPECT_EQ(idle[0].kernels, 0);
  EXPECT_EQ(idle[0].busy_ns, 0u);
  EXPECT_DOUBLE_EQ(idle[0].within_idle, 0.0);
  EXPECT_DOUBLE_EQ(idle[0].step_idle, 1.0);
}

TEST(GpuIdleMath, SummaryCoversDecodeStepsWithActivityOnly) {
  // A prefill step (ignored), two decode steps with work and one decode step with none.
  const std::vector<StepWindow> steps = {
      {0, 1000, false}, {1000, 2000, true}, {2000, 3000, true}, {3000, 4000, true}};
  const std::vector<GpuInterval> work = {
      {0, 100},                                      // prefill: 90% idle
      {1000, 1400}, {1500, 1900},                    // decode: within 100/900, step 200/1000
      {2000, 2100}, {2100, 2500}, {2500, 2800, false}};  // decode: within 0, step 200/1000
  const DecodeIdleSummary s = summarize_decode_idle(steps, measure_step_idle(steps, work));
  EXPECT_EQ(s.decode_steps, 2);
  EXPECT_EQ(s.decode_steps_without_activity, 1);
  EXPECT_DOUBLE_EQ(s.within_median, (100.0 / 900.0) / 2);
  EXPECT_DOUBLE_EQ(s.within_p90, 0.9 * (100.0 / 900.0));
  EXPECT_DOUBLE_EQ(s.step_median, 0.2);
  EXPECT_DOUBLE_EQ(s.step_p90, 0.2);
  EXPECT_EQ(s.kernels_median, 2);
}

// A summary of two measured decode steps with these numbers.
DecodeIdleSummary summary_of(double within_median, double within_p90, double step_median,
                             double step_p90, int64_t kernels) {
  DecodeIdleSummary s;
  s.decode_steps = 2;
  s.within_median = within_median;
  s.within_p90 = within_p90;
  s.step_median = step_median;
  s.step_p90 = step_p90;
  s.kernels_median = kernels;
  return s;
}

TEST(GpuIdleMath, LogLineKeepsTheFormatBenchParses) {
  EXPECT_EQ(format_decode_idle(summary_of(0.012, 0.02, 0.085, 0.1, 412)),
            "GPU idle within decode steps: median 1.2% (p90 2.0%); whole step incl. host: median "
            "8.5%; 412 kernels/step");
}

TEST(GpuIdleMath, NothingMeasuredGivesNoNumbers) {
  const DecodeIdleSummary s = summarize_decode_idle({{0, 100, false}}, {StepIdle{}});
  EXPECT_EQ(s.decode_steps, 0);
  EXPECT_EQ(format_decode_idle(s), "GPU idle within decode steps: no decode step was measured");
  EXPECT_TRUE(decode_idle_attributes(s).empty());
}

TEST(GpuIdleMath, ResultsAttributesAreInPercent) {
  const DecodeIdleSummary s = summary_of(0.0125, 0.5, 0.085, 1, 7);
  const std::map<std::string, std::string> expected = {
      {"gpu_idle_within_decode_step_median", "1.250"}, {"gpu_idle_within_decode_step_p90", "50.000"},
      {"gpu_idle_decode_step_median", "8.500"},        {"gpu_idle_decode_step_p90", "100.000"},
      {"kernels_per_decode_step", "7"}};
  EXPECT_EQ(decode_idle_attributes(s), expected);
}

}  // namespace
}  // namespace moetron
