// TimeCurve, TimeSurface and ProfileCostModel: exact at measured points, monotone, clamped past
// the measured range (never faster than the largest size's rate), and the roofline where the
// profile measured nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "error_of.hpp"
#include "moetron/backend/expert_paths.hpp"
#include "moetron/bench/time_curve.hpp"
#include "moetron/predict/profile_cost_model.hpp"
#include "moetron/predict/roofline_cost_model.hpp"

namespace moetron {
namespace {

using test::error_of;

TEST(TimeCurve, ExactAtMeasuredSizesAndLogLogBetween) {
  const TimeCurve c({1, 16, 256}, {1e-5, 1e-5, 1.6e-4});
  EXPECT_DOUBLE_EQ(c.at(1), 1e-5);
  EXPECT_DOUBLE_EQ(c.at(16), 1e-5);
  EXPECT_NEAR(c.at(256), 1.6e-4, 1e-18);
  EXPECT_NEAR(c.at(64), 4e-5, 1e-12);  // halfway in log size: the geometric mean of 1e-5 and 1.6e-4
}

TEST(TimeCurve, MonotoneEvenOverNoisyMedians) {
  const TimeCurve c({1, 2, 4, 8}, {3e-6, 2e-6, 5e-6, 4e-6});
  double last = 0;
  for (double x = 0.5; x < 64; x *= 1.1) {
    EXPECT_GE(c.at(x), last) << x;
    last = c.at(x);
  }
  EXPECT_DOUBLE_EQ(c.at(2), 3e-6);  // the running maximum
}

TEST(TimeCurve, ClampedPastTheMeasuredRange) {
  const TimeCurve c({16, 1024}, {1e-5, 1e-4});
  EXPECT_DOUBLE_EQ(c.at(1), 1e-5);          // below: the smallest size's time
  EXPECT_DOUBLE_EQ(c.at(4096), 4 * 1e-4);   // above: the largest size's rate, never faster
  EXPECT_NE(error_of([] { TimeCurve({4, 2}, {1, 1}); }), "");
  EXPECT_NE(error_of([] { TimeCurve({1}, {0}); }), "");
}

// A median over twice what both neighbours allow (the next size's time; the previous size's
// scaled linearly) is a disturbed measurement: it would raise every larger size's time through
// the running maximum (an H200 profile's GEMM read 51 us at one row, 6 us from two rows on).
TEST(TimeCurve, AnIsolatedSlowMedianTakesWhatItsNeighboursAllow) {
  const TimeCurve first({1, 2, 4, 8}, {51.3e-6, 6.0e-6, 5.9e-6, 6.1e-6});
  EXPECT_DOUBLE_EQ(first.at(1), 6.0e-6);
  EXPECT_DOUBLE_EQ(first.at(4), 6.0e-6);  // then the running maximum, as before
  EXPECT_DOUBLE_EQ(first.at(8), 6.1e-6);
  const TimeCurve inside({1, 2, 4, 8}, {5e-6, 5e-6, 30e-6, 6e-6});
  EXPECT_DOUBLE_EQ(inside.at(4), 10e-6);  // the previous size's 5 us, scaled from 2 to 4
  EXPECT_DOUBLE_EQ(inside.at(8), 10e-6);
  // Growth the neighbours allow stays: a kernel that switches to a slower path, then a faster one
  // (up to twice what they allow), and the last size, which has no larger neighbour.
  const TimeCurve rise({1, 2, 4, 8}, {5e-6, 5e-6, 19e-6, 6e-6});
  EXPECT_DOUBLE_EQ(rise.at(4), 19e-6);
  const TimeCurve last({1, 2}, {5e-6, 50e-6});
  EXPECT_DOUBLE_EQ(last.at(2), 50e-6);
}

// A curve read below its smallest measured size answers a guess (that size's time); where a
// curve of a larger second size measured x, the guess is capped by it rather than raising it:
// an H200 profile's one-expert tiles start at 16 rows (34.5 us, slower than its 27.9 us at 32),
// and raised the measured 27.2 us of 4 experts x 4 rows to 34.5.
TEST(TimeSurface, AGuessBelowACurvesRangeNeverRaisesMeasuredTimes) {
  TimeSurface s;
  s.add(1, TimeCurve({16, 32}, {34.5e-6, 27.9e-6}));
  s.add(4, TimeCurve({4, 16}, {27.2e-6, 29.6e-6}));
  s.add(16, TimeCurve({1, 4}, {61.2e-6, 62.4e-6}));
  EXPECT_NEAR(s.at(4, 4), 27.2e-6, 1e-15);
  EXPECT_NEAR(s.at(4, 1), 27.2e-6, 1e-15);
  EXPECT_NEAR(s.at(4, 8), std::sqrt(27.2e-6 * 62.4e-6), 1e-15);
  EXPECT_NEAR(s.at(16, 1), 34.5e-6, 1e-15);  // measured there: the one-expert curve's own time
  // A guess below the measurements stays (it raises nothing): 2 experts between 1's and 4's.
  TimeSurface low;
  low.add(1, TimeCurve({16}, {100e-6}));
  low.add(4, TimeCurve({4}, {300e-6}));
  EXPECT_NEAR(low.at(4, 1), 100e-6, 1e-15);
  EXPECT_NEAR(low.at(4, 2), std::sqrt(100e-6 * 300e-6), 1e-15);
  // Where no curve measured x, every curve's guess is read, as before.
  EXPECT_NEAR(low.at(2, 1), 100e-6, 1e-15);
  EXPECT_NEAR(low.at(2, 4), 300e-6, 1e-15);
}

TEST(TimeSurface, InterpolatesOverTheSecondSizeAndNeverFallsAsItGrows) {
  TimeSurface s;
  s.add(1, TimeCurve({1, 100}, {1e-5, 1e-4}));
  s.add(4, TimeCurve({1, 100}, {0.5e-5, 4e-4}));  // noisy: faster than one expert at 1 token
  EXPECT_DOUBLE_EQ(s.at(100, 4), 4e-4);
  EXPECT_DOUBLE_EQ(s.at(1, 4), 1e-5);   // made monotone in the second size
  EXPECT_NEAR(s.at(100, 2), 2e-4, 1e-12);
  EXPECT_DOUBLE_EQ(s.at(100, 8), 8e-4);  // past the largest: linear
}

HardwareFigures figures() {
  HardwareFigures f = hardware_preset("h200");
  f.name = "unit";
  return f;
}

// Timed eagerly (format 2): own times are per-call times less the eager launch gap.
HardwareProfile profile() {
  HardwareProfile p;
  p.format_version = 2;
  p.table(tables::kKernelGap).add({0}, 1, {2e-6, 2e-6, 2e-6});
  p.table(tables::kKernelGap).add({1}, 1, {1e-6, 1e-6, 1e-6});
  p.table(tables::kGemm).add({1024, 512}, 1, {1e-5, 1e-5, 1e-5});
  p.table(tables::kGemm).add({1024, 512}, 256, {4e-5, 4e-5, 4e-5});
  p.table(tables::kMoeExperts).add({512, 256, 1}, 1, {2e-5, 2e-5, 2e-5});
  p.table(tables::kMoeExperts).add({512, 256, 1}, 64, {8e-5, 8e-5, 8e-5});
  p.table(tables::kAttentionDecode).add({8, 2, 64, 1024}, 1, {6e-6, 6e-6, 6e-6});
  p.table(tables::kAttentionDecode).add({8, 2, 64, 1024}, 16, {3e-5, 3e-5, 3e-5});
  p.table(tables::kMemoryBound).add({0}, 1000, {3e-6, 3e-6, 3e-6});
  p.table(tables::kMemoryBound).add({1}, 1000, {5e-6, 5e-6, 5e-6});
  p.table(tables::kAllreduce).add({2, 0}, 1024, {1e-5, 1e-5, 1e-5});
  p.table(tables::kAllreduce).add({2, 0}, 4096, {2e-5, 2e-5, 2e-5});
  return p;
}

TEST(ProfileCostModel, MeasuredPointsLessTheLaunchGapWhichIsTheOverhead) {
  const RooflineCostModel roofline(figures());
  const ProfileCostModel m(profile(), roofline);
  EXPECT_DOUBLE_EQ(m.kernel_overhead_s(false), 2e-6);
  EXPECT_DOUBLE_EQ(m.kernel_overhead_s(true), 1e-6);
  EXPECT_DOUBLE_EQ(m.gemm_s(256, 1024, 512) + m.kernel_overhead_s(false), 4e-5);
  EXPECT_DOUBLE_EQ(m.gemm_s(1, 1024, 512), 8e-6);
  EXPECT_DOUBLE_EQ(m.attention_s(16, 1024, 8, 2, 64, false), 2.8e-5);
  EXPECT_DOUBLE_EQ(m.memory_bound_s(1000), 2e-6);  // the mean over the kernels: (1 + 3) / 2 us
  // The two GEMMs of the expert call share its time by FLOPs: 2/3 gate/up, 1/3 down.
  const double gate_up = m.grouped_gemm_s(64, 1, 512, 512, 64), down = m.grouped_gemm_s(64, 1, 512, 256, 64);
  EXPECT_NEAR(gate_up + down, 8e-5 - 2e-6, 1e-15);
  EXPECT_NEAR(gate_up, 2 * down, 1e-15);
}

// A format-3 profile of a backend that records timed its short calls as graph nodes: every
// per-call time is the kernel plus a node's gap, which is what own times take off (not the eager
// launch gap, which priced every kernel shorter than a launch at zero); greedy sampling waits for
// the host in every format and keeps the eager gap. A format-3 profile without a graph gap (the
// CPU's) keeps the eager gap.
TEST(ProfileCostModel, RecordedProfilesTakeTheGraphNodesGapOff) {
  const RooflineCostModel roofline(figures());
  HardwareProfile p = profile();
  p.format_version = 3;
  p.table(tables::kSampling).add({32000}, 16, {2e-5, 2e-5, 2e-5});
  const ProfileCostModel m(p, roofline);
  EXPECT_DOUBLE_EQ(m.gemm_s(256, 1024, 512), 4e-5 - 1e-6);
  EXPECT_DOUBLE_EQ(m.gemm_s(1, 1024, 512), 9e-6);
  EXPECT_DOUBLE_EQ(m.attention_s(16, 1024, 8, 2, 64, false), 2.9e-5);
  EXPECT_DOUBLE_EQ(m.memory_bound_s(1000), 3e-6);  // (2 + 4) / 2 us
  EXPECT_DOUBLE_EQ(m.sampling_s(16, 32000, 1000), 2e-5 - 2e-6);
  EXPECT_DOUBLE_EQ(m.kernel_overhead_s(true), 1e-6);
  EXPECT_DOUBLE_EQ(m.kernel_overhead_s(false), 2e-6);

  HardwareProfile cpu = profile();
  cpu.format_version = 3;
  cpu.tables[tables::kKernelGap.name].series.pop_back();  // no graph node gap measured
  const ProfileCostModel eager(cpu, roofline);
  EXPECT_DOUBLE_EQ(eager.gemm_s(1, 1024, 512), 8e-6);
}

// A profile's launch_cost answers launch_s by family; a family it lacks, or a profile without
// the table, answers the eager launch gap.
TEST(ProfileCostModel, LaunchCostsByFamilyElseTheEagerGap) {
  const RooflineCostModel roofline(figures());
  HardwareProfile p = profile();
  const ProfileCostModel without(p, roofline);
  EXPECT_DOUBLE_EQ(without.launch_s(LaunchFamily::kGemm), 2e-6);
  p.table(tables::kLaunchCost).add({static_cast<int64_t>(LaunchFamily::kGemm)}, 1, {7e-6, 6e-6, 9e-6});
  p.table(tables::kLaunchCost).add({static_cast<int64_t>(LaunchFamily::kExperts)}, 1, {2.5e-5, 2e-5, 3e-5});
  const ProfileCostModel with(p, roofline);
  EXPECT_DOUBLE_EQ(with.launch_s(LaunchFamily::kGemm), 7e-6);
  EXPECT_DOUBLE_EQ(with.launch_s(LaunchFamily::kExperts), 2.5e-5);
  EXPECT_DOUBLE_EQ(with.launch_s(LaunchFamily::kAttention), 2e-6);
}

// The CPU runs attention_inputs and greedy sampling as Ops' default composites (several ops, host
// sin/cos, copies to the host): the bench measures them, and a profile that has them answers
// from them; one made before prices them as one memory-bound kernel of `bytes`, as before.
TEST(ProfileCostModel, PricesAttentionInputsAndSamplingFromTheirTables) {
  const RooflineCostModel roofline(figures());
  HardwareProfile p = profile();
  const ProfileCostModel before(p, roofline);
  EXPECT_DOUBLE_EQ(before.attention_inputs_s(16, 8, 2, 64, 1000), before.memory_bound_s(1000));
  EXPECT_DOUBLE_EQ(before.sampling_s(16, 32000, 1000), before.memory_bound_s(1000));
  p.table(tables::kAttentionInputs).add({8, 2, 64}, 1, {7e-6, 7e-6, 7e-6});
  p.table(tables::kAttentionInputs).add({8, 2, 64}, 16, {1.2e-5, 1.2e-5, 1.2e-5});
  p.table(tables::kSampling).add({32000}, 1, {5e-6, 5e-6, 5e-6});
  p.table(tables::kSampling).add({32000}, 16, {2e-5, 2e-5, 2e-5});
  const ProfileCostModel m(p, roofline);
  EXPECT_DOUBLE_EQ(m.attention_inputs_s(16, 8, 2, 64, 1000), 1.2e-5 - 2e-6);  // less the launch gap
  EXPECT_DOUBLE_EQ(m.attention_inputs_s(1, 8, 2, 64, 1000), 5e-6);
  // Heads of another plan: the measured shape scaled by (q + 2 kv) heads.
  EXPECT_DOUBLE_EQ(m.attention_inputs_s(16, 4, 1, 64, 1000), (1.2e-5 - 2e-6) / 2);
  EXPECT_DOUBLE_EQ(m.sampling_s(16, 32000, 1000), 2e-5 - 2e-6);
  EXPECT_DOUBLE_EQ(m.sampling_s(16, 64000, 1000), 2 * (2e-5 - 2e-6));
}

// The host's bookkeeping of a forward is priced as measured (it is not a kernel: no launch gap
// taken off), over tokens and the stage's layers; a profile without the table prices it at zero.
TEST(ProfileCostModel, PricesTheHostStepFromItsTableAndZeroWithoutIt) {
  const RooflineCostModel roofline(figures());
  HardwareProfile p = profile();
  const ProfileCostModel before(p, roofline);
  EXPECT_EQ(before.host_step_s(4, 2, 8, 2), 0);
  EXPECT_NE(before.describe().find("no host_step table"), std::string::npos);
  p.table(tables::kHostStep).add({8, 2, 1}, 1, {3e-6, 3e-6, 3e-6});
  p.table(tables::kHostStep).add({8, 2, 1}, 16, {6e-6, 6e-6, 6e-6});
  p.table(tables::kHostStep).add({8, 2, 2}, 1, {4e-6, 4e-6, 4e-6});
  p.table(tables::kHostStep).add({8, 2, 2}, 16, {1e-5, 1e-5, 1e-5});
  const ProfileCostModel m(p, roofline);
  EXPECT_EQ(m.describe().find("no host_step table"), std::string::npos);
  EXPECT_DOUBLE_EQ(m.host_step_s(1, 1, 8, 2), 3e-6);
  EXPECT_DOUBLE_EQ(m.host_step_s(16, 2, 8, 2), 1e-5);
  EXPECT_DOUBLE_EQ(m.host_step_s(32, 2, 8, 2), 2e-5);  // past the largest: its rate
  EXPECT_EQ(m.host_step_s(0, 2, 8, 2), 0);             // an empty micro-batch is skipped
  EXPECT_LT(m.host_step_s(4, 1, 8, 2), m.host_step_s(4, 2, 8, 2));
  // Another expert count: the measured one scaled by experts x top_k.
  EXPECT_DOUBLE_EQ(m.host_step_s(16, 2, 16, 2), 2e-5);
}

TEST(ProfileCostModel, UnmeasuredShapesScaleTheNearestByWork) {
  const RooflineCostModel roofline(figures());
  const ProfileCostModel m(profile(), roofline);
  EXPECT_DOUBLE_EQ(m.gemm_s(256, 512, 512), m.gemm_s(256, 1024, 512) / 2);
  EXPECT_DOUBLE_EQ(m.attention_s(16, 1024, 4, 1, 64, false), m.attention_s(16, 1024, 8, 2, 64, false) / 2);
  // Monotone in tokens, and never faster past the largest measured size than its rate.
  EXPECT_LE(m.gemm_s(64, 1024, 512), m.gemm_s(128, 1024, 512));
  EXPECT_DOUBLE_EQ(m.gemm_s(1024, 1024, 512), 4 * 4e-5 - 2e-6);
}

TEST(ProfileCostModel, CollectivesNotMeasuredComeFromTheRoofline) {
  const RooflineCostModel roofline(figures());
  const ProfileCostModel m(profile(), roofline);
  EXPECT_DOUBLE_EQ(m.allreduce_s(4096, 2, LinkScope::IntraNode), 2e-5);
  EXPECT_DOUBLE_EQ(m.allreduce_s(4096, 4, LinkScope::IntraNode), roofline.allreduce_s(4096, 4, LinkScope::IntraNode));
  EXPECT_DOUBLE_EQ(m.allreduce_s(4096, 2, LinkScope::InterNode), roofline.allreduce_s(4096, 2, LinkScope::InterNode));
  EXPECT_DOUBLE_EQ(m.alltoall_s(4096, 2, LinkScope::IntraNode), roofline.alltoall_s(4096, 2, LinkScope::IntraNode));
  EXPECT_DOUBLE_EQ(m.allreduce_s(4096, 1, LinkScope::IntraNode), 0);
  // An empty profile is the roofline.
  const ProfileCostModel empty(HardwareProfile{}, roofline);
  EXPECT_DOUBLE_EQ(empty.gemm_s(64, 1024, 512), roofline.gemm_s(64, 1024, 512));
  EXPECT_DOUBLE_EQ(empty.kernel_overhead_s(true), roofline.kernel_overhead_s(true));
}

// Ops::copy (an emulated rank's stand-ins): the hbm_copy table's streaming rate, in proportion to
// the bytes, with no floor (the caller adds the kernel gap); without the table, the fallback's.
TEST(ProfileCostModel, CopiesAtTheHbmCopyRate) {
  const RooflineCostModel roofline(figures());
  HardwareProfile p;
  p.table(tables::kHbmCopy).add({1}, int64_t{2} << 30, {5e-4, 5e-4, 5e-4});  // 2 GiB read + written
  const ProfileCostModel m(p, roofline);
  EXPECT_DOUBLE_EQ(m.copy_s(int64_t{1} << 30), 5e-4);
  EXPECT_DOUBLE_EQ(m.copy_s(4096), 5e-4 * 8192 / static_cast<double>(int64_t{2} << 30));
  const ProfileCostModel empty(HardwareProfile{}, roofline);
  EXPECT_DOUBLE_EQ(empty.copy_s(4096), roofline.copy_s(4096));
  EXPECT_DOUBLE_EQ(roofline.copy_s(4096), roofline.memory_bound_s(8192));
  // Small copies measured too (a cache-resident copy is faster than the rate): like any kernel,
  // the measured time less the launch gap, the smallest's below it.
  HardwareProfile q;
  q.table(tables::kKernelGap).add({0}, 1, {1e-7, 1e-7, 1e-7});
  q.table(tables::kHbmCopy).add({1}, 8192, {3e-7, 3e-7, 3e-7});
  q.table(tables::kHbmCopy).add({1}, int64_t{2} << 30, {5e-4, 5e-4, 5e-4});
  const ProfileCostModel n(q, roofline);
  EXPECT_NEAR(n.copy_s(4096), 2e-7, 1e-15);
  EXPECT_NEAR(n.copy_s(100), 2e-7, 1e-15);
  EXPECT_NEAR(n.copy_s(int64_t{1} << 30), 5e-4 - 1e-7, 1e-12);
}

// Random times for both kernel paths of one expert shape: GEMV points at 1, 2, 4, 8 tokens, tile
// points above, over awkward expert counts; each path's times drawn from its own range.
HardwareProfile two_path_profile(std::mt19937& rng, bool with_gemv) {
  std::uniform_real_distribution<double> gemv_s(1e-6, 5e-6), tile_s(5e-5, 5e-4);
  HardwareProfile p;
  p.table(tables::kKernelGap).add({0}, 1, {1e-7, 1e-7, 1e-7});
  for (int64_t experts : {1, 3, 7, 26}) {
    if (with_gemv)
      for (int64_t rows : {1, 2, 4, 8}) p.table(tables::kMoeExpertsGemv).add({512, 256, experts}, rows, {gemv_s(rng), 0, 0});
    for (int64_t rows : {3, 9, 40, 130})
      if (rows * experts > kExpertGemvMaxTokens) p.table(tables::kMoeExperts).add({512, 256, experts}, rows, {tile_s(rng), 0, 0});
  }
  return p;
}

// The profile less one table.
HardwareProfile without(HardwareProfile p, const TableSpec& spec) {
  p.tables.erase(spec.name);
  return p;
}

TEST(ProfileCostModel, AnExpertCallAnswersFromItsOwnKernelPathOnly) {
  const RooflineCostModel roofline(figures());
  std::mt19937 rng(12);
  for (int trial = 0; trial < 20; ++trial) {
    const HardwareProfile p = two_path_profile(rng, true);
    const ProfileCostModel both(p, roofline), gemv_only(without(p, tables::kMoeExperts), roofline),
        tiles_only(without(p, tables::kMoeExpertsGemv), roofline);
    std::uniform_int_distribution<int64_t> rows(1, 300), experts(1, 60), tokens(1, 40);
    for (int q = 0; q < 50; ++q) {
      const int64_t r = rows(rng), e = experts(rng), t = q % 5 == 0 ? kExpertGemvMaxTokens + q % 2 : tokens(rng);
      const ProfileCostModel& own = expert_call_is_gemv(t) ? gemv_only : tiles_only;
      for (const auto& [n, k] : {std::make_pair<int64_t, int64_t>(512, 512), std::make_pair<int64_t, int64_t>(512, 256)})
        EXPECT_DOUBLE_EQ(both.grouped_gemm_s(r, e, n, k, t), own.grouped_gemm_s(r, e, n, k, t))
            << "trial " << trial << ": " << r << " rows x " << e << " experts in a call of " << t << " tokens";
    }
  }
  // At the switch: 8 tokens read GEMV points (at most 5 us a call), 9 tokens tile points (50 us at least).
  const ProfileCostModel m(two_path_profile(rng, true), roofline);
  const double at_8 = m.grouped_gemm_s(1, 7, 512, 512, 8) + m.grouped_gemm_s(1, 7, 512, 256, 8);
  const double at_9 = m.grouped_gemm_s(1, 7, 512, 512, 9) + m.grouped_gemm_s(1, 7, 512, 256, 9);
  EXPECT_LE(at_8, 5e-6);
  EXPECT_GE(at_9, 5e-5 - 1e-7);
}

// A CUDA profile's moe_experts points, filed by the path the bench's call took: one slot a token,
// per_expert x experts tokens over the model's 64 experts. Returned apart too (tiles, GEMMs).
// Format 4, whose rule sent every call of 256 rows an expert to the GEMMs (today's sends these
// small experts to the tiles: FilesEachFormatsPointsByItsRule below).
struct GemmPathProfiles {
  HardwareProfile both, tiles, gemms;
};
GemmPathProfiles gemm_path_profiles(std::mt19937& rng) {
  std::uniform_real_distribution<double> tile_s(5e-5, 5e-4), gemm_s(1e-3, 2e-3);
  GemmPathProfiles out;
  for (HardwareProfile* p : {&out.both, &out.tiles, &out.gemms}) {
    p->format_version = 4;
    p->origin.backend = "cuda";
    p->table(tables::kKernelGap).add({0}, 1, {1e-7, 1e-7, 1e-7});
  }
  for (int64_t experts : {1, 4, 16, 64})
    for (int64_t rows : {4, 16, 64, 128, 256, 512, 768, 1024}) {
      const int64_t tokens = rows * experts;
      if (expert_call_is_gemv(tokens)) continue;
      const bool by_gemms = tokens > 8192 && tokens / 64 >= 256;  // the engine's rule, by hand
      const Measurement m{by_gemms ? gemm_s(rng) : tile_s(rng), 0, 0};
      out.both.table(tables::kMoeExperts).add({1024, 512, experts}, rows, m);
      (by_gemms ? out.gemms : out.tiles).table(tables::kMoeExperts).add({1024, 512, experts}, rows, m);
    }
  return out;
}

TEST(ProfileCostModel, PerExpertGemmCallsAnswerFromTheGemmPointsOnly) {
  const RooflineCostModel roofline(figures());
  std::mt19937 rng(31);
  for (int trial = 0; trial < 10; ++trial) {
    const GemmPathProfiles p = gemm_path_profiles(rng);
    ASSERT_FALSE(p.gemms.tables.empty() || p.tiles.tables.empty());
    const ProfileCostModel both(p.both, roofline), tiles(p.tiles, roofline), gemms(p.gemms, roofline);
    std::uniform_int_distribution<int64_t> rows(9, 1500), experts(1, 64), tokens(9, 9000);
    for (int q = 0; q < 60; ++q) {
      const int64_t r = rows(rng), e = experts(rng), t = tokens(rng);
      const bool g = q % 2 == 0;
      for (const auto& [n, k] : {std::make_pair<int64_t, int64_t>(1024, 1024), std::make_pair<int64_t, int64_t>(1024, 512)})
        EXPECT_DOUBLE_EQ(both.grouped_gemm_s(r, e, n, k, t, g), (g ? gemms : tiles).grouped_gemm_s(r, e, n, k, t, g))
            << "trial " << trial << ": " << r << " rows x " << e << " experts, " << (g ? "GEMMs" : "tiles");
    }
    // Either side of the switch at 64 experts: 128 rows an expert on tiles, 256 on GEMMs.
    EXPECT_LE(both.grouped_gemm_s(128, 64, 1024, 1024, 1024, false), 5e-4);
    EXPECT_GE(both.grouped_gemm_s(256, 64, 1024, 1024, 2048, true), 2.0 / 3.0 * 1e-3 - 1e-7);
    // One GEMM an active expert: measured with all 64 active, 16 active take a quarter, whatever
    // the 16-expert series measured at 1,024 rows an expert (16,384 tokens: the GEMM path too).
    for (int64_t r : {256, 300, 512, 700})
      EXPECT_NEAR(both.grouped_gemm_s(r, 16, 1024, 1024, 4 * r, true), both.grouped_gemm_s(r, 64, 1024, 1024, 16 * r, true) / 4,
                  1e-15) << r;
    // Off CUDA there is no GEMM path: the same points answer either flag.
    HardwareProfile cpu = p.both;
    cpu.origin.backend = "cpu";
    const ProfileCostModel on_cpu(cpu, roofline);
    EXPECT_DOUBLE_EQ(on_cpu.grouped_gemm_s(300, 64, 1024, 1024, 2400, true),
                     on_cpu.grouped_gemm_s(300, 64, 1024, 1024, 2400, false));
  }
}

// Large experts take the per-expert GEMMs from 128 rows an expert since profile format 4; an
// older profile's 128-row points were measured on the tiles and are read as tiles.
TEST(ProfileCostModel, FilesLargeExpertsPointsByTheRuleTheirFormatWasMeasuredUnder) {
  const RooflineCostModel roofline(figures());
  const double gap = 1e-7;
  const auto mixtral_profile = [&](int format) {
    HardwareProfile p;
    p.format_version = format;
    p.origin.backend = "cuda";
    p.table(tables::kKernelGap).add({0}, 1, {gap, gap, gap});
    for (const auto& [rows, seconds] : {std::make_pair<int64_t, double>(64, 1.9e-3), std::make_pair<int64_t, double>(128, 0.7e-3),
                                        std::make_pair<int64_t, double>(256, 1.2e-3)})
      p.table(tables::kMoeExperts).add({4096, 14336, 8}, rows, {seconds, seconds, seconds});
    return p;
  };
  const auto call = [](const ProfileCostModel& m, bool by_gemms) {  // 128 rows x 8 experts, 512 tokens
    return m.grouped_gemm_s(128, 8, 2 * 14336, 4096, 512, by_gemms) + m.grouped_gemm_s(128, 8, 4096, 14336, 512, by_gemms);
  };
  const ProfileCostModel old_format(mixtral_profile(3), roofline), new_format(mixtral_profile(4), roofline);
  EXPECT_NEAR(call(old_format, false), 0.7e-3 - gap, 1e-12);  // the tiles' point
  EXPECT_NEAR(call(old_format, true), 1.2e-3 - gap, 1e-12);   // the GEMMs' smallest: 256 rows
  EXPECT_NEAR(call(new_format, true), 0.7e-3 - gap, 1e-12);
  EXPECT_NEAR(call(new_format, false), 2 * 1.9e-3 - gap, 1e-12);  // past the tiles' 64 rows: linear
}

// Format 5 (ExpertGemmRule::kHostCost): 64 experts of OLMoE's tp=2 slice (2048 x 512: 1.6 GFLOP
// each at 256 rows) stay on the tiles up to 476 rows and take the GEMMs from 477 (3 GFLOP): the
// 512-row point is the GEMMs' smallest; in a format-4 profile they were GEMM points from 256.
TEST(ProfileCostModel, FilesEachFormatsPointsByItsRule) {
  const RooflineCostModel roofline(figures());
  const double gap = 1e-7, tiles_s = 1.5e-3, gemms_s = 1.9e-3;
  const auto olmoe_profile = [&](int format) {
    HardwareProfile p;
    p.format_version = format;
    p.origin.backend = "cuda";
    p.table(tables::kKernelGap).add({0}, 1, {gap, gap, gap});
    for (int64_t rows : {128, 256, 384, 512, 768}) {
      const bool gemms = expert_call_by_gemms(rows * 64, 1, 64, 2048, 512, true, expert_gemm_rule_of_format(format));
      const double t = gemms ? gemms_s : tiles_s * rows / 256;
      p.table(tables::kMoeExperts).add({2048, 512, 64}, rows, {t, t, t});
    }
    return p;
  };
  const auto call = [](const ProfileCostModel& m, int64_t rows, bool by_gemms) {
    return m.grouped_gemm_s(rows, 64, 2 * 512, 2048, rows * 8, by_gemms) +
           m.grouped_gemm_s(rows, 64, 2048, 512, rows * 8, by_gemms);
  };
  const ProfileCostModel format4(olmoe_profile(4), roofline), format5(olmoe_profile(5), roofline);
  EXPECT_NEAR(call(format5, 256, false), tiles_s - gap, 1e-12);  // a tiles point now
  EXPECT_NEAR(call(format4, 256, true), gemms_s - gap, 1e-12);   // a GEMM point then
  EXPECT_NEAR(call(format5, 384, false), 1.5 * tiles_s - gap, 1e-12);
  EXPECT_NEAR(call(format5, 512, true), gemms_s - gap, 1e-12);   // the GEMMs' smallest today
  EXPECT_EQ(expert_gemm_rule_of_format(3), ExpertGemmRule::kFrom256Rows);
  EXPECT_EQ(expert_gemm_rule_of_format(kProfileFormatVersion), ExpertGemmRule::kHostCost);
}

// A profile measured under the Hopper default (kernels expert_gemm=wgmma+cublas) files its points
// by that rule: OLMoE's full experts (2048 x 1024, 64 of them) stay on the grouped kernel up to
// 768 rows an expert (9.7 GFLOP) and take cuBLAS from 1,024 (12.9 GFLOP), where the cuBLAS rule
// (format 5, no kernels record) had its GEMMs from 256 rows (3.2 GFLOP).
TEST(ProfileCostModel, FilesAHopperProfilesPointsByTheHopperRule) {
  const RooflineCostModel roofline(figures());
  const double gap = 1e-7, grouped_s = 1e-3, cublas_s = 4e-3;
  HardwareProfile p;
  p.origin.backend = "cuda";
  p.origin.kernels = "expert_gemm=wgmma+cublas,expert_streams=8,decode_experts=mma";
  p.table(tables::kKernelGap).add({0}, 1, {gap, gap, gap});
  for (int64_t rows : {128, 256, 512, 768, 1024, 2048}) {
    const bool cublas = expert_call_by_gemms(rows * 64, 1, 64, 2048, 1024, true, ExpertGemmRule::kHopperCublas);
    EXPECT_EQ(cublas, rows >= 1024) << rows;
    const double t = (cublas ? cublas_s : grouped_s) * rows / 512;
    p.table(tables::kMoeExperts).add({2048, 1024, 64}, rows, {t, t, t});
  }
  const auto call = [](const ProfileCostModel& m, int64_t rows, bool by_gemms) {
    return m.grouped_gemm_s(rows, 64, 2 * 1024, 2048, rows * 8, by_gemms) +
           m.grouped_gemm_s(rows, 64, 2048, 1024, rows * 8, by_gemms);
  };
  const ProfileCostModel hopper(p, roofline);
  EXPECT_EQ(hopper.expert_gemm_rule(), ExpertGemmRule::kHopperCublas);
  EXPECT_NEAR(call(hopper, 512, false), grouped_s - gap, 1e-12);      // a grouped-kernel point
  EXPECT_NEAR(call(hopper, 1024, true), 2 * cublas_s - gap, 1e-12);   // the cuBLAS GEMMs' smallest
  EXPECT_NEAR(call(hopper, 768, false), 1.5 * grouped_s - gap, 1e-12);
  p.origin.kernels = "";  // the same points read by the cuBLAS rule: 256-768 rows were GEMM points
  EXPECT_NEAR(call(ProfileCostModel(p, roofline), 512, true), grouped_s - gap, 1e-12);
  EXPECT_NEAR(call(ProfileCostModel(p, roofline), 128, false), 0.25 * grouped_s - gap, 1e-12);
}

TEST(ProfileCostModel, AProfileWithoutGemvPointsPricesGemvCallsFromTheRooflineNotTheTiles) {
  const RooflineCostModel roofline(figures());
  std::mt19937 rng(7);
  const ProfileCostModel m(two_path_profile(rng, false), roofline);
  for (int64_t t : {1, 4, 8})
    EXPECT_DOUBLE_EQ(m.grouped_gemm_s(1, 26, 512, 512, t), roofline.grouped_gemm_s(1, 26, 512, 512, t)) << t;
  EXPECT_NE(m.grouped_gemm_s(1, 26, 512, 512, 9), roofline.grouped_gemm_s(1, 26, 512, 512, 9));
  EXPECT_NE(m.describe().find("GEMV-path expert calls from the roofline"), std::string::npos) << m.describe();
}

}  // namespace
}  // namespace moetron
