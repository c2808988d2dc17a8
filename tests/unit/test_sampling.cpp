// Sampling: the Philox generator against published known answers, greedy and filtered sampling,
// determinism in (seed, step), and empirical frequencies against the filtered softmax.
#include "moetron/sampling/sampling.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "moetron/core/error.hpp"

namespace moetron {
namespace {

SamplingParams params(float temperature, int top_k, float top_p, uint64_t seed = 7) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  return p;
}

std::vector<float> random_logits(int64_t vocab, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(vocab);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(Philox, KnownAnswers) {
  // Random123's kat_vectors for philox4x32 with 10 rounds: counter, key -> output.
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Philox, UniformFromCounterPacksSeedAndCounterAsDocumented) {
  const uint64_t seed = 0x1234567890abcdefull, counter = 0xfedcba0987654321ull;
  const auto bits = philox4x32_10({0x87654321, 0xfedcba09, 0, 0}, {0x90abcdef, 0x12345678});
  EXPECT_EQ(uniform_from_counter(seed, counter), static_cast<float>(bits[0] >> 8) / 16777216.0f);
}

TEST(Philox, UniformIsUniformOnUnitInterval) {
  constexpr int kDraws = 200000, kBins = 16;
  std::vector<int> bins(kBins, 0);
  double sum = 0.0;
  for (uint64_t c = 0; c < kDraws; ++c) {
    const float u = uniform_from_counter(99, c);
    ASSERT_TRUE(u >= 0.0f && u < 1.0f) << u;
    sum += u;
    ++bins[static_cast<int>(u * kBins)];
  }
  EXPECT_NEAR(sum / kDraws, 0.5, 5.0 * std::sqrt(1.0 / 12.0 / kDraws));
  double chi2 = 0.0;
  const double expected = static_cast<double>(kDraws) / kBins;
  for (int b : bins) chi2 += (b - expected) * (b - expected) / expected;
  EXPECT_LT(chi2, 44.3);  // 15 degrees of freedom: exceeded with probability 1e-4
}

TEST(Sampling, GreedyIsArgmaxWithLowestIndexOnTies) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
  for (uint64_t step = 0; step < 10; ++step)
    EXPECT_EQ(sample_token(logits.data(), 5, params(0.0f, 0, 1.0f), step), 1);
  const auto big = random_logits(1000, 3.0f, 5);
  const int32_t best = static_cast<int32_t>(std::max_element(big.begin(), big.end()) - big.begin());
  EXPECT_EQ(sample_token(big.data(), 1000, params(0.0f, 50, 0.5f), 3), best);
}

// A NaN or +Inf anywhere in the row: no token, kNonFiniteToken, whatever the settings; -inf is a
// masked token and samples as before.
TEST(Sampling, NonFiniteRowsGiveNoToken) {
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  const auto base = random_logits(300, 2.0f, 9);
  for (float bad : {nan, -nan, inf}) {
    for (size_t at : {size_t{0}, size_t{137}, base.size() - 1}) {
      std::vector<float> row = base;
      row[at] = bad;
      EXPECT_EQ(argmax_token(row.data(), 300), kNonFiniteToken) << bad << " at " << at;
      for (const SamplingParams& p : {params(0.0f, 0, 1.0f), params(0.8f, 0, 1.0f), params(1.0f, 20, 1.0f),
                                      params(1.0f, 0, 0.9f), params(0.5f, 5, 0.5f)})
        for (uint64_t step = 0; step < 5; ++step)
          EXPECT_EQ(sample_token(row.data(), 300, p, step), kNonFiniteToken)
              << bad << " at " << at << ", temperature " << p.temperature << " top_k " << p.top_k;
    }
  }
  std::vector<float> masked = base;
  for (size_t i = 0; i < masked.size(); i += 2) masked[i] = -inf;
  const int32_t best = argmax_token(masked.data(), 300);
  EXPECT_EQ(best, static_cast<int32_t>(std::max_element(masked.begin(), masked.end()) - masked.begin()));
  for (uint64_t step = 0; step < 20; ++step) {
    const int32_t t = sample_token(masked.data(), 300, params(1.0f, 0, 1.0f), step);
    EXPECT_TRUE(t >= 0 && t < 300 && t % 2 == 1) << t;
  }
  const std::vector<float> all_masked(7, -inf);
  EXPECT_EQ(argmax_token(all_masked.data(), 7), 0);
}

TEST(Sampling, TopKOneIsGreedy) {
  const auto logits = random_logits(500, 1.0f, 11);
  const int32_t greedy = sample_token(logits.data(), 500, params(0.0f, 0, 1.0f), 0);
  for (uint64_t step = 0; step < 200; ++step)
    EXPECT_EQ(sample_token(logits.data(), 500, params(1.5f, 1, 1.0f), step), greedy);
}

TEST(Sampling, TinyTopPKeepsOnlyTheBestToken) {
  const auto logits = random_logits(300, 0.5f, 12);
  const int32_t greedy = sample_token(logits.data(), 300, params(0.0f, 0, 1.0f), 0);
  for (uint64_t step = 0; step < 200; ++step)
    EXPECT_EQ(sample_token(logits.data(), 300, params(1.0f, 0, 1e-6f), step), greedy);
}

TEST(Sampling, DeterministicInSeedAndStep) {
  const auto logits = random_logits(64, 0.3f, 13);  // flat: many tokens are likely
  const SamplingParams p = params(1.0f, 0, 1.0f, 1234);
  std::vector<int32_t> first, again, other_seed;
  for (uint64_t step = 0; step < 100; ++step) {
    first.push_back(sample_token(logits.data(), 64, p, step));
    again.push_back(sample_token(logits.data(), 64, p, step));
    other_seed.push_back(sample_token(logits.data(), 64, params(1.0f, 0, 1.0f, 1235), step));
  }
  EXPECT_EQ(first, again);
  EXPECT_NE(first, other_seed);
  EXPECT_GE(std::set<int32_t>(first.begin(), first.end()).size(), 20u);
}

TEST(Sampling, TemperatureToZeroBecomesGreedy) {
  const auto logits = random_logits(200, 2.0f, 14);
  const int32_t greedy = sample_token(logits.data(), 200, params(0.0f, 0, 1.0f), 0);
  for (float t : {1e-3f, 1e-20f, 1e-38f})
    for (uint64_t step = 0; step < 100; ++step)
      EXPECT_EQ(sample_token(logits.data(), 200, params(t, 0, 1.0f), step), greedy) << "temperature " << t;
}

// The distribution sampling should draw from, computed independently in double.
std::vector<double> filtered_softmax(const std::vector<float>& logits, const SamplingParams& p) {
  const size_t vocab = logits.size();
  std::vector<int> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const size_t k = p.top_k > 0 ? std::min<size_t>(p.top_k, vocab) : vocab;
  std::vector<double> weight(vocab, 0.0);
  double total = 0.0;
  for (size_t i = 0; i < k; ++i) total += weight[order[i]] = std::exp(logits[order[i]] / p.temperature);
  double mass = 0.0;
  size_t kept = 0;
  while (kept < k && (kept == 0 || mass < p.top_p)) mass += weight[order[kept++]] / total;
  std::vector<double> prob(vocab, 0.0);
  for (size_t i = 0; i < kept; ++i) prob[order[i]] = weight[order[i]] / total / mass;
  return prob;
}

TEST(Sampling, FrequenciesMatchFilteredSoftmax) {
  constexpr int kDraws = 100000;
  const auto logits = random_logits(12, 1.5f, 15);
  for (const SamplingParams& p : {params(1.0f, 0, 1.0f, 1), params(0.7f, 6, 1.0f, 2),
                                  params(1.3f, 0, 0.8f, 3), params(0.9f, 8, 0.6f, 4)}) {
    SCOPED_TRACE("temperature " + std::to_string(p.temperature) + " top_k " + std::to_string(p.top_k) +
                 " top_p " + std::to_string(p.top_p));
    const std::vector<double> want = filtered_softmax(logits, p);
    std::vector<int> count(logits.size(), 0);
    for (uint64_t step = 0; step < kDraws; ++step) ++count[sample_token(logits.data(), 12, p, step)];
    for (size_t v = 0; v < logits.size(); ++v) {
      if (want[v] == 0.0) {
        EXPECT_EQ(count[v], 0) << "token " << v << " is filtered out";
        continue;
      }
      const double sigma = std::sqrt(want[v] * (1.0 - want[v]) / kDraws);
      EXPECT_NEAR(static_cast<double>(count[v]) / kDraws, want[v], 5.0 * sigma + 1e-9) << "token " << v;
    }
  }
}

// The algorithm the header documents, written plainly: sort the whole vocabulary, then walk.
int32_t documented_draw(const std::vector<float>& logits, const SamplingParams& p, uint64_t step) {
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  if (p.top_k > 0) order.resize(std::min<size_t>(p.top_k, order.size()));
  std::vector<double> c;
  double sum = 0.0;
  for (int t : order) c.push_back(sum += std::exp((logits[t] - logits[order[0]]) / p.temperature));
  size_t n = c.size() - 1;
  if (p.top_p < 1.0f)
    for (n = 0; n + 1 < c.size() && c[n] < p.top_p * sum; ++n) {
    }
  const double target = uniform_from_counter(p.seed, step) * c[n];
  size_t i = 0;
  while (i < n && !(c[i] > target)) ++i;
  return order[i];
}

TEST(Sampling, DrawsFollowTheDocumentedAlgorithm) {
  // A vocabulary large enough that nuclei of hundreds to thousands of tokens are sorted in
  // several lazy extensions.
  const auto logits = random_logits(5000, 1.0f, 16);
  for (const SamplingParams& p : {params(1.0f, 0, 1.0f, 5), params(0.8f, 0, 0.95f, 6),
                                  params(1.2f, 300, 0.9f, 7), params(0.5f, 2000, 1.0f, 8)}) {
    SCOPED_TRACE("temperature " + std::to_string(p.temperature) + " top_k " + std::to_string(p.top_k) +
                 " top_p " + std::to_string(p.top_p));
    for (uint64_t step = 0; step < 300; ++step)
      ASSERT_EQ(sample_token(logits.data(), 5000, p, step), documented_draw(logits, p, step)) << "step " << step;
  }
}

TEST(Sampling, RejectsOutOfRangeSettings) {
  EXPECT_NO_THROW(check_sampling_params(params(0.8f, 40, 0.95f), "request 0"));
  EXPECT_THROW(check_sampling_params(params(-0.1f, 0, 1.0f), "--temperature"), Error);
  EXPECT_THROW(check_sampling_params(params(NAN, 0, 1.0f), "--temperature"), Error);
  EXPECT_THROW(check_sampling_params(params(1.0f, -1, 1.0f), "--top-k"), Error);
  EXPECT_THROW(check_sampling_params(params(1.0f, 0, 0.0f), "--top-p"), Error);
  EXPECT_THROW(check_sampling_params(params(1.0f, 0, 1.5f), "--top-p"), Error);
  try {
    check_sampling_params(params(1.0f, 0, 1.5f), "request 3");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("request 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moetron
