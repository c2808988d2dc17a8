// Expert-load analysis against hand-computed values, routing windows, and the skew laws.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "error_of.hpp"
#include "moetron/report/load_report.hpp"
#include "moetron/analysis/load_stats.hpp"
#include "moetron/engine/routing_windows.hpp"
#include "moetron/io/hdf5.hpp"
#include "moetron/io/results.hpp"
#include "moetron/model/routing_skew.hpp"

namespace moetron {
namespace {

using test::error_of;

TEST(LoadStats, HandComputedValues) {
  // Loads 1, 2, 3, 6: mean 3, total 12.
  const LoadStats s = load_stats({1, 2, 3, 6});
  // Sum over ordered pairs of |xi - xj| = 2 * (1 + 2 + 5 + 1 + 4 + 3) = 32; / (2 * 16 * 3) = 1/3.
  EXPECT_NEAR(s.gini, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(s.imbalance, 2.0, 1e-12);
  // Variance (4 + 1 + 0 + 9) / 4 = 3.5.
  EXPECT_NEAR(s.cv, std::sqrt(3.5) / 3.0, 1e-12);
  const double h = -(1 / 12.0 * std::log(1 / 12.0) + 2 / 12.0 * std::log(2 / 12.0) + 3 / 12.0 * std::log(3 / 12.0) +
                     6 / 12.0 * std::log(6 / 12.0));
  EXPECT_NEAR(s.entropy, h / std::log(4.0), 1e-12);

  const LoadStats equal = load_stats({5, 5, 5, 5});
  EXPECT_NEAR(equal.gini, 0, 1e-12);
  EXPECT_NEAR(equal.imbalance, 1, 1e-12);
  EXPECT_NEAR(equal.cv, 0, 1e-12);
  EXPECT_NEAR(equal.entropy, 1, 1e-12);
  EXPECT_NEAR(equal.zipf_exponent, 0, 1e-12);

  const LoadStats one = load_stats({0, 0, 9, 0});
  EXPECT_NEAR(one.gini, 0.75, 1e-12);  // (n - 1) / n
  EXPECT_NEAR(one.imbalance, 4, 1e-12);
  EXPECT_NEAR(one.entropy, 0, 1e-12);
  EXPECT_TRUE(std::isnan(one.zipf_exponent));  // one non-zero load: no line
  EXPECT_TRUE(std::isnan(load_stats({0, 0}).gini));
}

TEST(LoadStats, ZipfFitRecoversAnExactLaw) {
  std::vector<int64_t> loads;
  for (int r = 1; r <= 16; ++r) loads.push_back(static_cast<int64_t>(std::llround(1e9 * std::pow(r, -1.5))));
  std::swap(loads[0], loads[7]);  // order does not matter
  EXPECT_NEAR(zipf_exponent(loads), 1.5, 1e-6);
}

TEST(LoadStats, HotColdSetsPairsAndWaits) {
  const std::vector<int64_t> loads = {4, 9, 1, 9, 0, 3};
  EXPECT_EQ(hottest(loads, 3), (std::vector<int64_t>{1, 3, 0}));
  EXPECT_EQ(coldest(loads, 2), (std::vector<int64_t>{4, 2}));
  EXPECT_NEAR(top_share(loads, 2), 18.0 / 26.0, 1e-12);
  EXPECT_EQ(set_loads(loads, 2), (std::vector<int64_t>{14, 12}));
  EXPECT_EQ(set_loads(loads, 3), (std::vector<int64_t>{13, 10, 3}));
  // Redundant experts: expert 1 (9, set 0) has copies on sets 1 and 2: 3 each; expert 3 (9,
  // set 1) one copy on set 2: 5 stays, 4 moves. Sets: 4+3 | 1+3+5 | 3+4+0+3 = 7, 9, 10.
  std::vector<std::vector<int64_t>> copies(6);
  copies[1] = {1, 2};
  copies[3] = {2};
  EXPECT_EQ(set_loads(loads, 3, copies), (std::vector<int64_t>{7, 9, 10}));
  EXPECT_EQ(set_loads(loads, 3, {}), set_loads(loads, 3));
  // Two phases of two sets: (6, 2) and (3, 3): max 6 + 3 = 9, mean 4 + 3 = 7, lost 2/9.
  EXPECT_NEAR(wait_share({6, 2, 3, 3}, 2), 2.0 / 9.0, 1e-12);
  EXPECT_NEAR(wait_share({6, 2, 3, 3}, 1), 0.0, 1e-12);
  // Layer 1 of two, 3 experts: pairs (0, 2) x5 and (1, 2) x2; layer 0: (0, 1) x2.
  std::vector<int64_t> co(2 * 9, 0);
  const auto put = [&co](int l, int a, int b, int64_t n) { co[(l * 3 + a) * 3 + b] = co[(l * 3 + b) * 3 + a] = n; };
  put(1, 0, 2, 5);
  put(1, 1, 2, 2);
  put(0, 0, 1, 2);
  const std::vector<PairCount> top = top_pairs(co, 2, 3, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ((std::vector<int64_t>{top[0].layer, top[0].a, top[0].b, top[0].count}), (std::vector<int64_t>{1, 0, 2, 5}));
  EXPECT_EQ((std::vector<int64_t>{top[1].layer, top[1].a, top[1].b, top[1].count}), (std::vector<int64_t>{0, 0, 1, 2}));
}

TEST(RoutingWindows, FixedWindowsAndAPartialLast) {
  RoutingWindows w(2, 100);
  int64_t reads = 0;
  std::vector<int64_t> cumulative = {0, 0};
  for (int64_t step = 1; step <= 5; ++step) {
    cumulative[0] += step;
    cumulative[1] += 1;
    w.end_of_step(step, [&] { ++reads; return cumulative; });
  }
  w.finish(5, [&] { ++reads; return cumulative; });
  EXPECT_EQ(reads, 3);  // after steps 2, 4 and the last
  EXPECT_EQ(w.ranges(), (std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {2, 4}, {4, 5}}));
  EXPECT_EQ(w.counts_by_window(), (std::vector<int64_t>{3, 2, 7, 2, 5, 1}));
}

TEST(RoutingWindows, AutomaticWindowsDoubleWithinTheBound) {
  RoutingWindows w(0, 4);
  std::vector<int64_t> cumulative = {0};
  for (int64_t step = 1; step <= 21; ++step) {
    cumulative[0] += 1;
    w.end_of_step(step, [&] { return cumulative; });
  }
  w.finish(21, [&] { return cumulative; });
  // 1-step windows until a fifth; then 2, then 4, then 8: [0,8) [8,16) and the rest.
  EXPECT_EQ(w.window_steps(), 8);
  EXPECT_EQ(w.ranges(), (std::vector<std::pair<int64_t, int64_t>>{{0, 8}, {8, 16}, {16, 21}}));
  EXPECT_EQ(w.counts_by_window(), (std::vector<int64_t>{8, 8, 5}));
  EXPECT_EQ(max_routing_windows(48, 128), 341);
  EXPECT_EQ(max_routing_windows(1000, 1000), 16);
}

TEST(RoutingSkew, ParsesLawsAndRefusesMalformedOnesNamingTheOption) {
  const RoutingSkew z = parse_routing_skew("zipf:1.2");
  EXPECT_EQ(z.law, SkewLaw::Zipf);
  EXPECT_DOUBLE_EQ(z.exponent, 1.2);
  const RoutingSkew h = parse_routing_skew("hot:2:0.6");
  EXPECT_EQ(h.law, SkewLaw::Hot);
  EXPECT_EQ(h.hot_experts, 2);
  EXPECT_DOUBLE_EQ(h.hot_fraction, 0.6);
  for (const char* bad : {"", "zipf", "zipf:", "zipf:x", "zipf:-1", "zipf:1:2", "hot:2", "hot:0:0.5", "hot:1.5:0.5",
                          "hot:2:1", "hot:2:0", "uniform", "zipf:nan"})
    EXPECT_NE(error_of([&] { parse_routing_skew(bad); }).find("--routing-skew"), std::string::npos) << bad;
  // 8 experts, top-2: an expert takes at most half the slots.
  EXPECT_NE(error_of([&] { check_routing_skew(h, 2, 2); }).find("--routing-skew"), std::string::npos);
  EXPECT_NE(error_of([&] { check_routing_skew(parse_routing_skew("hot:1:0.8"), 8, 2); }).find("at most"),
            std::string::npos);
  EXPECT_NO_THROW(check_routing_skew(h, 8, 2));
}

TEST(RoutingSkew, TargetSharesFollowTheLawAndTheTopKCap) {
  const std::vector<double> z = skew_target_shares(parse_routing_skew("zipf:1"), 4, 1);
  const double h4 = 1 + 1 / 2.0 + 1 / 3.0 + 1 / 4.0;
  EXPECT_NEAR(z[0], 1 / h4, 1e-12);
  EXPECT_NEAR(z[3], 0.25 / h4, 1e-12);
  // Top-2 caps a share at 1/2: zipf:3 over 4 experts wants 0.85 for the first.
  const std::vector<double> capped = skew_target_shares(parse_routing_skew("zipf:3"), 4, 2);
  EXPECT_NEAR(capped[0], 0.5, 1e-12);
  EXPECT_NEAR(std::accumulate(capped.begin(), capped.end(), 0.0), 1.0, 1e-12);
  EXPECT_GT(capped[1], capped[2]);
  const std::vector<double> hot = skew_target_shares(parse_routing_skew("hot:2:0.6"), 8, 2);
  EXPECT_NEAR(hot[0], 0.3, 1e-12);
  EXPECT_NEAR(hot[7], 0.4 / 6, 1e-12);
  const std::vector<int64_t> order = skew_expert_order(8, 7, 3);
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(order, skew_expert_order(8, 7, 3));
  EXPECT_NE(order, skew_expert_order(8, 7, 4));
}

// The bias solved for normal logits gives the shares on a fresh sample of such logits.
TEST(RoutingSkew, BiasReproducesTheSharesOnNormalLogits) {
  const int64_t E = 16, k = 2;
  const std::vector<double> want = skew_target_shares(parse_routing_skew("zipf:1"), E, k);
  const std::vector<float> bias = skew_router_bias(want, k, kDummyRouterLogitStd);
  std::mt19937_64 rng(99);
  std::normal_distribution<double> normal(0, kDummyRouterLogitStd);
  std::vector<double> got(E, 0), logits(E);
  std::vector<int64_t> order(E);
  const int tokens = 40000;
  for (int t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < E; ++e) logits[e] = normal(rng) + bias[e];
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
    for (int64_t j = 0; j < k; ++j) got[order[j]] += 1.0 / (tokens * k);
  }
  for (int64_t e = 0; e < E; ++e) EXPECT_NEAR(got[e], want[e], 0.1 * want[e] + 0.002) << "rank " << e;
}

// A small results file written by the writer, analysed: every number checked by hand.
TEST(LoadReport, SmallFileByHand) {
  const std::string dir = ::testing::TempDir();
  const std::string in = dir + "/load_report_in_" + std::to_string(getpid()) + ".h5";
  const std::string out = dir + "/load_report_out_" + std::to_string(getpid()) + ".h5";
  RunResults r;
  r.meta.plan = "pp=1,tp=2,dp=1,ep=2";
  r.meta.extra["routing_skew"] = "hot:1:0.5";
  // Layer 1 is dense (zeros). Two windows.
  r.expert_tokens = {{1, 2, 3, 6}, {0, 0, 0, 0}, {4, 4, 4, 4}};
  r.routing.tokens_by_window = {1, 2, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0,  //
                                0, 0, 3, 6, 0, 0, 0, 0, 0, 4, 4, 4};
  r.routing.window_steps = {0, 1, 1, 2};
  r.routing.coactivation.assign(3 * 16, 0);
  r.routing.coactivation[(2 * 4 + 1) * 4 + 3] = r.routing.coactivation[(2 * 4 + 3) * 4 + 1] = 4;
  r.steps = {{1, 1, true, 0.75}, {1, 1, false, 0.25}};
  RankRecord r0, r1;
  r0.layer_end = r1.layer_end = 3;
  r0.expert_end = 2;
  r1.expert_begin = 2;
  r1.expert_end = 4;
  r0.expert_tokens = 11;  // 1 + 2 + 4 + 4
  r1.expert_tokens = 17;  // 3 + 6 + 4 + 4
  r0.expert_seconds = 0.125;
  r1.expert_seconds = 0.5;
  r.ranks = {r0, r1};
  write_results(in, r);

  const LoadReport a = analyze_results(in, 2, 0);
  EXPECT_EQ(a.moe_layers, (std::vector<int64_t>{0, 2}));
  EXPECT_NEAR(a.layer_stats[0].gini, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(a.layer_stats[1].gini, 0.0, 1e-12);
  EXPECT_EQ(a.overall_tokens, (std::vector<int64_t>{5, 6, 7, 10}));
  EXPECT_NEAR(a.overall.imbalance, 10 / 7.0, 1e-12);
  EXPECT_EQ(a.hot, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a.cold, (std::vector<int64_t>{0, 1}));
  ASSERT_EQ(a.pairs.size(), 1u);
  EXPECT_EQ(a.pairs[0].layer, 2);
  EXPECT_EQ(a.ep, 2);
  EXPECT_EQ(a.ep_tokens, (std::vector<int64_t>{11, 17}));
  // Phases (window, layer) of set loads: (3, 0), (4, 0), (0, 9), (4, 8): max 3 + 4 + 9 + 8 = 24,
  // mean 1.5 + 2 + 4.5 + 6 = 14: 10/24 lost. Busiest rank: 0.5 s of 1 s of steps.
  EXPECT_NEAR(a.expert_wait_share, 10.0 / 24.0, 1e-12);
  EXPECT_NEAR(a.expert_time_share, 0.5, 1e-12);
  EXPECT_NEAR(a.step_time_lost_share, 5.0 / 24.0, 1e-12);
  EXPECT_EQ(a.ep_tokens_by_window, (std::vector<int64_t>{7, 0, 4, 17}));
  EXPECT_EQ(a.rank_expected_tokens, (std::vector<int64_t>{11, 17}));
  EXPECT_EQ(a.rank_expert_tokens, (std::vector<int64_t>{11, 17}));
  // hot:1:0.5: the hottest expert's share, 6/12 and 4/16, averaged.
  EXPECT_NEAR(a.law_measured, (0.5 + 0.25) / 2, 1e-12);
  EXPECT_NE(format_load_report(a).find("max/mean"), std::string::npos);

  write_load_report(out, a);
  const h5::File f = h5::File::open_read(out);
  EXPECT_EQ(f.read<double>("/layers/gini").size(), 2u);
  EXPECT_NEAR(f.read<double>("/layers/imbalance")[0], 2.0, 1e-12);
  EXPECT_NEAR(f.read<double>("/layers/cv")[1], 0.0, 1e-12);
  EXPECT_NEAR(f.read<double>("/layers/entropy")[1], 1.0, 1e-12);
  for (const char* name : {"gini", "imbalance", "cv", "entropy"})
    EXPECT_NEAR(f.float64_attribute("/overall", name), load_stats({5, 6, 7, 10}).*(
                    std::string(name) == "gini" ? &LoadStats::gini
                    : std::string(name) == "imbalance" ? &LoadStats::imbalance
                    : std::string(name) == "cv" ? &LoadStats::cv : &LoadStats::entropy), 1e-12) << name;
  EXPECT_EQ(f.read<int64_t>("/ep/tokens"), (std::vector<int64_t>{11, 17}));
  std::remove(in.c_str());
  std::remove(out.c_str());

  EXPECT_NE(error_of([&] { analyze_results(dir + "/no_such_results.h5", 2, 0); }).find("no_such_results.h5"),
            std::string::npos);
}

}  // namespace
}  // namespace moetron
