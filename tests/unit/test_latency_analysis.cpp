// analysis/percentiles and analysis/latency_summary against values worked out by hand (and
// numpy.percentile's default, linear interpolation, for the same inputs).
#include <gtest/gtest.h>

#include <cmath>

#include "moetron/analysis/latency_summary.hpp"
#include "moetron/analysis/percentiles.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace {

TEST(Percentiles, LinearInterpolationBetweenClosestRanks) {
  // Sorted: 1 2 3 4; h = 3q/100. p50: h = 1.5 -> 2.5; p90: h = 2.7 -> 3.7; p99: h = 2.97 -> 3.97.
  const std::vector<double> x = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(percentile(x, 50), 2.5);
  EXPECT_DOUBLE_EQ(percentile(x, 90), 3.7);
  EXPECT_DOUBLE_EQ(percentile(x, 99), 3.97);
  EXPECT_DOUBLE_EQ(percentile(x, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(x, 100), 4);
  // 0, 10: p90 is 9. One sample: every percentile is it.
  EXPECT_DOUBLE_EQ(percentile({0, 10}, 90), 9);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
  // 1..10: p90: h = 8.1 -> 9.1 (numpy.percentile(range(1, 11), 90) == 9.1).
  EXPECT_NEAR(percentile({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90), 9.1, 1e-12);
  const std::vector<double> many = percentiles({3, 1, 2}, {50, 90, 99});
  EXPECT_DOUBLE_EQ(many[0], 2);
  EXPECT_DOUBLE_EQ(many[1], 2.8);   // h = 1.8
  EXPECT_DOUBLE_EQ(many[2], 2.98);  // h = 1.98
}

TEST(Percentiles, NoSamplesIsNanAndBadInputIsRefused) {
  EXPECT_TRUE(std::isnan(percentile({}, 50)));
  EXPECT_THROW(percentile({1, 2}, 101), Error);
  EXPECT_THROW(percentile({1, 2}, -1), Error);
  EXPECT_THROW(percentile({1, std::nan("")}, 50), Error);
}

TEST(LatencySummary, TtftItlE2eAndGoodputByHand) {
  // Three requests' token times from arrival.
  //   a: 0.2, 0.3, 0.5  -> TTFT 0.2, gaps 0.1 0.2, mean ITL 0.15, e2e 0.5
  //   b: 1.5            -> TTFT 1.5, no gap, e2e 1.5
  //   c: 0.4, 0.45      -> TTFT 0.4, gap 0.05, e2e 0.45
  const std::vector<std::vector<double>> times = {{0.2, 0.3, 0.5}, {1.5}, {0.4, 0.45}};
  LatencySlo slo;
  slo.ttft_s = 1.0;
  slo.itl_s = 0.1;
  const LatencySummary s = summarize_latency(times, slo, /*total_seconds=*/2.0);
  // TTFT sorted 0.2 0.4 1.5: p50 = 0.4; p90: h = 1.8 -> 0.4 + 0.8 * 1.1 = 1.28.
  EXPECT_NEAR(s.ttft.p50, 0.4, 1e-12);
  EXPECT_NEAR(s.ttft.p90, 1.28, 1e-12);
  EXPECT_NEAR(s.ttft.p99, 0.4 + 0.98 * 1.1, 1e-12);
  // Gaps pooled: 0.05 0.1 0.2: p50 = 0.1; p90: h = 1.8 -> 0.1 + 0.8 * 0.1 = 0.18.
  EXPECT_NEAR(s.itl.p50, 0.1, 1e-12);
  EXPECT_NEAR(s.itl.p90, 0.18, 1e-12);
  // e2e sorted 0.45 0.5 1.5: p50 = 0.5.
  EXPECT_NEAR(s.e2e.p50, 0.5, 1e-12);
  // SLO: a fails (mean ITL 0.15 > 0.1), b fails (TTFT 1.5 > 1), c meets it. One of three in 2 s.
  EXPECT_EQ(s.slo_met, 1);
  EXPECT_NEAR(s.slo_met_fraction, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(s.goodput_requests_per_s, 0.5, 1e-12);
  EXPECT_NEAR(mean_inter_token_s({0.2, 0.3, 0.5}), 0.15, 1e-12);
  EXPECT_TRUE(std::isnan(mean_inter_token_s({1.5})));
  EXPECT_TRUE(meets_slo({0.9}, slo));  // one token: TTFT alone
}

TEST(LatencySummary, NothingMeasuredIsNan) {
  const LatencySummary s = summarize_latency({}, LatencySlo{}, 0.0);
  EXPECT_TRUE(std::isnan(s.ttft.p50));
  EXPECT_TRUE(std::isnan(s.slo_met_fraction));
  EXPECT_TRUE(std::isnan(s.goodput_requests_per_s));
}

}  // namespace
}  // namespace moetron
