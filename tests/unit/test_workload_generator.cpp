// moetron workload's generator: counts, lengths by kind, Poisson gaps, the closed loop,
// reproducibility, and options refused by name.
#include <gtest/gtest.h>

#include <cmath>

#include "error_of.hpp"
#include "moetron/analysis/workload_generator.hpp"

namespace moetron {
namespace {

using test::error_of;

WorkloadSpec spec_of(WorkloadKind kind, int64_t n) {
  WorkloadSpec s;
  s.kind = kind;
  s.requests = n;
  s.vocab = 100;
  s.seed = 3;
  return s;
}

TEST(WorkloadGenerator, EachKindStaysInItsRanges) {
  for (WorkloadKind kind : {WorkloadKind::Short, WorkloadKind::Medium, WorkloadKind::Long}) {
    const KindLengths len = kind_lengths(kind);
    const auto reqs = generate_workload(spec_of(kind, 2000));
    ASSERT_EQ(reqs.size(), 2000u);
    int64_t shortest = len.prompt.max, longest = 0;
    for (const GeneratedRequest& r : reqs) {
      const int64_t p = static_cast<int64_t>(r.prompt_tokens.size());
      EXPECT_GE(p, len.prompt.min);
      EXPECT_LE(p, len.prompt.max);
      EXPECT_GE(r.max_new_tokens, len.output.min);
      EXPECT_LE(r.max_new_tokens, len.output.max);
      for (int32_t t : r.prompt_tokens) ASSERT_TRUE(t >= 0 && t < 100);
      EXPECT_FALSE(r.arrival_s.has_value());
      EXPECT_EQ(r.after, -1);
      shortest = std::min(shortest, p);
      longest = std::max(longest, p);
    }
    // Uniform over the range: both ends are reached (or nearly) in 2000 draws.
    EXPECT_LE(shortest, len.prompt.min + (len.prompt.max - len.prompt.min) / 50);
    EXPECT_GE(longest, len.prompt.max - (len.prompt.max - len.prompt.min) / 50);
  }
}

TEST(WorkloadGenerator, MixedDrawsEveryKindInItsShare) {
  const auto reqs = generate_workload(spec_of(WorkloadKind::Mixed, 4000));
  int counts[3] = {0, 0, 0};
  for (const GeneratedRequest& r : reqs) {
    const int64_t p = static_cast<int64_t>(r.prompt_tokens.size());
    counts[p <= 64 ? 0 : p <= 512 ? 1 : 2]++;
  }
  EXPECT_NEAR(counts[0] / 4000.0, 0.5, 0.03);
  EXPECT_NEAR(counts[1] / 4000.0, 0.3, 0.03);
  EXPECT_NEAR(counts[2] / 4000.0, 0.2, 0.03);
}

TEST(WorkloadGenerator, PoissonGapsHaveMeanOneOverRate) {
  WorkloadSpec s = spec_of(WorkloadKind::Short, 20000);
  s.rate = 50;
  const auto reqs = generate_workload(s);
  double previous = 0, sum = 0, sum_sq = 0;
  for (const GeneratedRequest& r : reqs) {
    ASSERT_TRUE(r.arrival_s.has_value());
    const double gap = *r.arrival_s - previous;
    ASSERT_GT(gap, 0);
    sum += gap;
    sum_sq += gap * gap;
    previous = *r.arrival_s;
  }
  const double mean = sum / 20000, sd = std::sqrt(sum_sq / 20000 - mean * mean);
  // The mean of 20000 exponential gaps is within 3% of 1/rate (its standard error is 0.7%),
  // and an exponential's standard deviation equals its mean.
  EXPECT_NEAR(mean, 1.0 / 50, 0.03 / 50);
  EXPECT_NEAR(sd, 1.0 / 50, 0.05 / 50);
}

TEST(WorkloadGenerator, ConcurrencyChainsEachRequestToTheOneCBefore) {
  WorkloadSpec s = spec_of(WorkloadKind::Short, 10);
  s.concurrency = 3;
  const auto reqs = generate_workload(s);
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(reqs[static_cast<size_t>(i)].after, i < 3 ? -1 : i - 3) << i;
    EXPECT_FALSE(reqs[static_cast<size_t>(i)].arrival_s.has_value());
    EXPECT_EQ(reqs[static_cast<size_t>(i)].id, "r" + std::to_string(i));
  }
}

TEST(WorkloadGenerator, SameSeedSameRequestsOtherSeedOthers) {
  const auto a = generate_workload(spec_of(WorkloadKind::Mixed, 50));
  const auto b = generate_workload(spec_of(WorkloadKind::Mixed, 50));
  WorkloadSpec other = spec_of(WorkloadKind::Mixed, 50);
  other.seed = 4;
  const auto c = generate_workload(other);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt_tokens, b[i].prompt_tokens);
    EXPECT_EQ(a[i].max_new_tokens, b[i].max_new_tokens);
  }
  EXPECT_NE(a[0].prompt_tokens, c[0].prompt_tokens);
}

TEST(WorkloadGenerator, BadOptionsNameTheOption) {
  WorkloadSpec s = spec_of(WorkloadKind::Short, 0);
  EXPECT_NE(error_of([&] { generate_workload(s); }).find("--requests"), std::string::npos);
  s = spec_of(WorkloadKind::Short, 5);
  s.rate = -1;
  EXPECT_NE(error_of([&] { generate_workload(s); }).find("--rate"), std::string::npos);
  s.rate = std::nan("");
  EXPECT_NE(error_of([&] { generate_workload(s); }).find("--rate"), std::string::npos);
  s.rate = 2;
  s.concurrency = 2;
  EXPECT_NE(error_of([&] { generate_workload(s); }).find("exclude each other"), std::string::npos);
  s = spec_of(WorkloadKind::Short, 5);
  s.vocab = 0;
  EXPECT_NE(error_of([&] { generate_workload(s); }).find("--vocab"), std::string::npos);
  EXPECT_NE(error_of([] { parse_workload_kind("huge", "--kind"); }).find("--kind: unknown kind 'huge'"),
            std::string::npos);
}

}  // namespace
}  // namespace moetron
