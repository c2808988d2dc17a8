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

TEST(GpuIdleMath, BubblesBetweenKernelsLeaveOutTheLaunchGap) {
  // Copies 0..10 and 15..20, the launch gap to the first kernel at 120, kernels 120..200,
  // 210..300 (a 10 ns bubble), a copy 290..320 and a kernel 330..420 (another 10 ns).
  const std::vector<StepWindow> steps = {{0, 500, true}};
  const auto idle = measure_step_idle(steps, {{0, 10, false}, {15, 20, false}, {120, 200}, {210, 300},
                                              {290, 320, false}, {330, 420}});
  EXPECT_EQ(idle[0].launch_gap_ns, 100u);
  EXPECT_DOUBLE_EQ(idle[0].kernel_span_idle, 20.0 / 300.0);
  EXPECT_DOUBLE_EQ(idle[0].within_idle, (5.0 + 100 + 20) / 420.0);  // the old measure keeps it all
  // A step that opens with a kernel has no launch gap.
  const auto direct = measure_step_idle(steps, {{50, 100}, {100, 150}});
  EXPECT_EQ(direct[0].launch_gap_ns, 0u);
  EXPECT_DOUBLE_EQ(direct[0].kernel_span_idle, 0.0);

  const DecodeIdleSummary s = summarize_decode_idle(steps, idle);
  EXPECT_DOUBLE_EQ(s.launch_gap_median_us, 0.1);
  EXPECT_DOUBLE_EQ(s.busy_median_us, (10 + 5 + 80 + 90 + 30 + 90 - 10) / 1e3);
  EXPECT_EQ(format_kernel_idle(s),
            "GPU idle between the kernels of decode steps: median 6.7% (p90 6.7%); launch gap before "
            "the first kernel: median 0.1 us; busy 0.3 us a step");
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
  DecodeIdleSummary s = summary_of(0.0125, 0.5, 0.085, 1, 7);
  s.kernel_span_median = 0.02;
  s.kernel_span_p90 = 0.03;
  s.launch_gap_median_us = 12.5;
  s.busy_median_us = 1195.25;
  const std::map<std::string, std::string> expected = {
      {"gpu_idle_within_decode_step_median", "1.250"}, {"gpu_idle_within_decode_step_p90", "50.000"},
      {"gpu_idle_decode_step_median", "8.500"},        {"gpu_idle_decode_step_p90", "100.000"},
      {"kernels_per_decode_step", "7"},                {"gpu_idle_between_kernels_median", "2.000"},
      {"gpu_idle_between_kernels_p90", "3.000"},       {"gpu_launch_gap_median_us", "12.500"},
      {"gpu_busy_decode_step_median_us", "1195.250"}};
  EXPECT_EQ(decode_idle_attributes(s), expected);
}

TEST(GpuIdleMath, GapsAreSummedByTheWorkOnEitherSide) {
  // Names: 0 = a, 1 = b, 2 = c, 3 = [memcpy]. Two decode steps and a prefill step (ignored).
  // Step 1: a 0..100, b 150..200 (gap 50 after a), c 180..260 (launched early: overlaps b),
  //         a 300..400 (gap 40 after c, which ended the run).
  // Step 2: a 1000..1100, b 1130..1200 (gap 30 after a), a copy 1190..1250 (overlaps, not a kernel),
  //         a 1300..1350 (gap 50 after the copy).
  const std::vector<StepWindow> steps = {{0, 500, true}, {600, 900, false}, {1000, 1500, true}};
  const std::vector<GpuInterval> work = {
      {0, 100, true, 0},       {150, 200, true, 1},      {180, 260, true, 2}, {300, 400, true, 0},
      {600, 700, true, 0},     {800, 850, true, 1},      // prefill: not counted
      {1000, 1100, true, 0},   {1130, 1200, true, 1},    {1190, 1250, false, 3},
      {1300, 1350, true, 0}};
  const DecodeGapSummary s = decode_idle_gaps(steps, work);
  EXPECT_EQ(s.decode_steps, 2);
  EXPECT_EQ(s.later_starts, 5);       // b, c, a; b, a (the copy is not a kernel)
  EXPECT_EQ(s.overlapped_starts, 1);  // c
  ASSERT_EQ(s.gaps.size(), 3u);
  EXPECT_EQ(s.gaps[0].before, 0);  // a -> b: 50 + 30
  EXPECT_EQ(s.gaps[0].after, 1);
  EXPECT_EQ(s.gaps[0].total_ns, 80u);
  EXPECT_EQ(s.gaps[0].count, 2);
  // c -> a (40) and [memcpy] -> a (50): the larger first.
  EXPECT_EQ(s.gaps[1].before, 3);
  EXPECT_EQ(s.gaps[1].total_ns, 50u);
  EXPECT_EQ(s.gaps[2].before, 2);
  EXPECT_EQ(s.gaps[2].after, 0);
  EXPECT_EQ(s.gaps[2].total_ns, 40u);

  const std::vector<std::string> lines = format_idle_gaps(s, {"a", "b", "c", "[memcpy]"}, 2);
  ASSERT_EQ(lines.size(), 3u);  // the summary and the two largest
  EXPECT_EQ(lines[0],
            "GPU idle gaps within decode steps: 0.1 us a step in 2.0 gaps; 1 of 5 kernel starts "
            "overlapped earlier work (launched early)");
  EXPECT_EQ(lines[1], "     0.04 us a step (  1.0 gaps of   0.04 us) after a, before b");
  EXPECT_EQ(lines[2], "     0.03 us a step (  0.5 gaps of   0.05 us) after [memcpy], before a");
}

TEST(GpuIdleMath, KernelNamesLoseNamespacesTemplatesAndParameters) {
  // void moetron::kernels::(anonymous namespace)::rmsnorm_kernel<256>(float const*, int)
  EXPECT_EQ(short_kernel_name("_ZN7moetron7kernels12_GLOBAL__N_114rmsnorm_kernelILi256EEEvPKfi"), "rmsnorm_kernel");
  // void add_kernel(float*)
  EXPECT_EQ(short_kernel_name("_Z10add_kernelPf"), "add_kernel");
  EXPECT_EQ(short_kernel_name("nvjet_sm90_tst_64x8"), "nvjet_sm90_tst_64x8");  // not mangled
  EXPECT_EQ(short_kernel_name(""), "?");
}

TEST(GpuIdleMath, GapsWithoutDecodeStepsGiveNoLines) {
  const DecodeGapSummary s = decode_idle_gaps({{0, 100, false}}, {{0, 10, true, 0}, {50, 60, true, 0}});
  EXPECT_EQ(s.decode_steps, 0);
  EXPECT_TRUE(s.gaps.empty());
  EXPECT_TRUE(format_idle_gaps(s, {"a"}, 5).empty());
  // An unknown name prints as "?".
  DecodeGapSummary t;
  t.decode_steps = 1;
  t.gaps.push_back({7, -1, 1000, 1});
  EXPECT_EQ(format_idle_gaps(t, {"a"}, 5).back(), "     1.00 us a step (  1.0 gaps of   1.00 us) after ?, before ?");
}

}  // namespace
}  // namespace moetron
