// Ops::sample_rows and the device sampler's algorithm on the host: the default sample_rows is
// sample_token row by row, and radix::sample_row (the code kernels/sampling.cu runs) driven by a
// sequential Row draws what sample_token draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "../common/sampling_reference.hpp"
#include "moetron/backend/cpu_ops.hpp"
#include "moetron/sampling/radix_sampling.hpp"
#include "moetron/sampling/sampling.hpp"

namespace moetron {
namespace {

using sampling_test::LogitKind;

constexpr LogitKind kKinds[] = {LogitKind::Normal, LogitKind::Ties, LogitKind::NegInf};

TEST(SampleRows, DefaultIsSampleTokenRowByRow) {
  std::unique_ptr<Ops> ops = make_cpu_ops();
  std::mt19937_64 rng(31);
  for (int64_t vocab : {50, 1000, 5000}) {
    const int64_t rows = 24;
    std::vector<float> values;
    std::vector<SamplingParams> params;
    std::vector<uint64_t> steps;
    for (int64_t r = 0; r < rows; ++r) {
      const auto row = sampling_test::make_logits(vocab, kKinds[r % 3], rng);
      values.insert(values.end(), row.begin(), row.end());
      params.push_back(sampling_test::random_params(rng, vocab));
      steps.push_back(rng() % 1000);
    }
    Tensor logits = ops->alloc(DType::F32, {rows, vocab});
    ops->copy_from_host(logits, values.data());
    Tensor ids = ops->alloc(DType::I32, {rows});
    ops->sample_rows(logits, params, steps, ids);
    std::vector<int32_t> got(static_cast<size_t>(rows));
    ops->to_host(ids, got.data());
    for (int64_t r = 0; r < rows; ++r)
      EXPECT_EQ(got[r], sample_token(&values[r * vocab], vocab, params[r], steps[r]))
          << "vocab " << vocab << " row " << r;
  }
}

// The backend's samplers give kNonFiniteToken for exactly the rows holding a NaN or +Inf.
TEST(SampleRows, NonFiniteRowsGiveNoToken) {
  std::unique_ptr<Ops> ops = make_cpu_ops();
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  std::mt19937_64 rng(33);
  const int64_t rows = 6, vocab = 257;
  std::vector<float> values;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = sampling_test::make_logits(vocab, kKinds[r % 3], rng);
    values.insert(values.end(), row.begin(), row.end());
  }
  values[1 * vocab + 200] = nan;
  values[3 * vocab + 0] = inf;
  values[5 * vocab + vocab - 1] = -nan;
  Tensor logits = ops->alloc(DType::F32, {rows, vocab});
  ops->copy_from_host(logits, values.data());
  Tensor ids = ops->alloc(DType::I32, {rows});
  std::vector<int32_t> got(static_cast<size_t>(rows));
  SamplingParams sampled;
  sampled.temperature = 0.7f;
  sampled.top_k = 40;
  for (const SamplingParams& p : {SamplingParams{}, sampled}) {
    if (p.temperature == 0.0f)
      ops->argmax_rows(logits, ids);
    else
      ops->sample_rows(logits, std::vector<SamplingParams>(rows, p), std::vector<uint64_t>(rows, 4), ids);
    ops->to_host(ids, got.data());
    for (int64_t r = 0; r < rows; ++r) {
      if (r % 2 == 1) {
        EXPECT_EQ(got[r], kNonFiniteToken) << "row " << r << " temperature " << p.temperature;
      } else {
        EXPECT_EQ(got[r], sample_token(&values[r * vocab], vocab, p, 4)) << "row " << r;
      }
      if (r % 2 == 0) {
        EXPECT_GE(got[r], 0) << "row " << r;
      }
    }
  }
}

// The Row radix::sample_row needs, one plain loop per question, keeping what the device's Row
// keeps (the first levels' histograms, the keys of a narrowed range), so that passes() counts
// the passes over the whole row that the device makes.
class SequentialRow {
 public:
  // keeps = false: every question is a pass over the row (what keeping must not change).
  SequentialRow(const float* logits, int64_t vocab, bool keeps = true)
      : logits_(logits), vocab_(vocab), keeps_(keeps) {}
  int64_t vocab() const { return vocab_; }
  radix::BinarySearch search() const { return {}; }
  int passes() const { return passes_; }
  int gathers() const { return gathers_; }

  uint64_t max_key(const radix::Range& r) {
    uint64_t best = 0;
    for (uint64_t key : candidates(r))
      if (radix::in_range(key, r) && key > best) best = key;
    return best;
  }

  const radix::Histogram& histogram(const radix::Range& r, const radix::Weights* w, double per_unit) {
    const bool kept = keeps_ && r.level < radix::kKeptLevels;
    if (kept && kept_[r.level].answers(r, w != nullptr, per_unit)) return hist_[r.level];
    radix::Histogram& h = hist_[kept ? r.level : radix::kKeptLevels];
    if (kept) kept_[r.level] = radix::Question{r, w != nullptr, per_unit, true};
    h = radix::Histogram{};
    for (uint64_t key : candidates(r)) {
      if (!radix::in_range(key, r)) continue;
      const int d = radix::digit_of(key, r.level);
      ++h.count[d];
      if (w != nullptr) h.mass[d] += radix::fixed_point((*w)(radix::logit_of(key)), per_unit);
    }
    radix::fill_sums_before(h);
    return h;
  }

  void narrow(const radix::Range& r, uint32_t keys) {
    if (!keeps_ || keys > radix::kGatherKeys || (has_list_ && radix::inside(r, listed_))) return;
    std::vector<uint64_t> gathered;
    for (uint64_t key : candidates(radix::Range{}))
      if (radix::in_range(key, r)) gathered.push_back(key);
    EXPECT_EQ(gathered.size(), keys) << "narrow: the range's key count";
    list_ = std::move(gathered);
    listed_ = r;
    has_list_ = true;
    ++gathers_;
  }

 private:
  // The keys a question about r visits: the list when it covers r, else (one pass) the row's.
  std::vector<uint64_t> candidates(const radix::Range& r) {
    if (has_list_ && radix::inside(r, listed_)) return list_;
    ++passes_;
    std::vector<uint64_t> keys(static_cast<size_t>(vocab_));
    for (int64_t i = 0; i < vocab_; ++i) keys[static_cast<size_t>(i)] = radix::key_of(logits_[i], i);
    return keys;
  }

  const float* logits_;
  int64_t vocab_;
  bool keeps_;
  int passes_ = 0, gathers_ = 0;
  radix::Histogram hist_[radix::kKeptLevels + 1] = {};
  radix::Question kept_[radix::kKeptLevels];
  std::vector<uint64_t> list_;
  radix::Range listed_;
  bool has_list_ = false;
};

int32_t radix_draw(const std::vector<float>& logits, const SamplingParams& p, uint64_t step,
                   int* passes = nullptr, bool keeps = true) {
  SequentialRow row(logits.data(), static_cast<int64_t>(logits.size()), keeps);
  radix::RowParams rp;
  rp.temperature = p.temperature;
  rp.top_k = p.top_k;
  rp.top_p = p.top_p;
  rp.seed = p.seed;
  rp.step = step;
  const int32_t token = radix::sample_row(row, rp);
  if (passes) *passes = row.passes();
  return token;
}

std::string describe(const SamplingParams& p, uint64_t step) {
  std::ostringstream os;
  os << "temperature " << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p
     << " seed " << p.seed << " step " << step;
  return os.str();
}

TEST(RadixSampling, BlocksPerRowFillTheDeviceWithinTheirBounds) {
  // An H200 holds 396 sampling blocks of 256 threads (3 an SM); odd counts of every kind too.
  EXPECT_EQ(radix::blocks_per_row(64, 50304, 396), 6);
  EXPECT_EQ(radix::blocks_per_row(1, 151936, 396), radix::kMaxBlocksPerRow);
  EXPECT_EQ(radix::blocks_per_row(1, 50304, 396), 49);   // the slice bound: 50304 / 1024
  EXPECT_EQ(radix::blocks_per_row(8, 151936, 396), 49);  // the device: 396 / 8
  EXPECT_EQ(radix::blocks_per_row(256, 151936, 396), 1);
  EXPECT_EQ(radix::blocks_per_row(7, 32001, 396), 31);  // the slice bound: 32001 / 1024 = 31
  EXPECT_EQ(radix::blocks_per_row(3, 1023, 1000), 1);   // one block's work
  EXPECT_EQ(radix::blocks_per_row(0, 50304, 396), 1);
  EXPECT_EQ(radix::blocks_per_row(500, 50304, 396), 1);  // more rows than resident blocks
  std::mt19937_64 rng(11);
  for (int i = 0; i < 2000; ++i) {
    const int64_t rows = 1 + static_cast<int64_t>(rng() % 700);
    const int64_t vocab = 1 + static_cast<int64_t>(rng() % 300000);
    const int64_t resident = 1 + static_cast<int64_t>(rng() % 2000);
    const int blocks = radix::blocks_per_row(rows, vocab, resident);
    ASSERT_GE(blocks, 1);
    ASSERT_LE(blocks, radix::kMaxBlocksPerRow);
    if (blocks > 1) {  // a split launch must fit the device at once and give each block a slice
      ASSERT_LE(rows * blocks, resident) << rows << " rows, vocab " << vocab;
      ASSERT_GE(vocab / blocks, radix::kMinSlice) << rows << " rows, vocab " << vocab;
    }
    // Never fewer blocks than both bounds allow.
    const int64_t allowed = std::min({radix::kMaxBlocksPerRow, resident / rows, vocab / radix::kMinSlice});
    ASSERT_EQ(blocks, std::max<int64_t>(1, allowed));
  }
}

// The device's search (kernels/sampling.cu, BlockSearch): each digit of [0, hi] tested at once
// and those that hold counted. The picks must give what the binary search gives.
struct CountingSearch {
  template <class Holds>
  int operator()(int hi, const Holds& holds) const {
    int n = 0;
    for (int d = 0; d <= hi; ++d) n += holds(d) ? 1 : 0;
    return n - 1;
  }
};

// The picks binary-search the integer sums before each bin; the walk over the bins from the
// highest digit down (what they replace) is the reference: the same bin always, and the same
// cumulative weight up to the rounding of a sum added bin by bin (1e-12 of the total here).
TEST(RadixSampling, PicksAgreeWithAWalkOverTheBins) {
  std::mt19937_64 rng(41);
  for (int trial = 0; trial < 3000; ++trial) {
    radix::Histogram h{};
    const int fill = static_cast<int>(rng() % 4);  // empty, sparse, half, dense
    for (int d = 0; d < radix::kBins; ++d) {
      const bool used = fill == 0 ? false : fill == 1 ? rng() % 40 == 0 : fill == 2 ? rng() % 2 == 0 : true;
      if (!used) continue;
      h.count[d] = 1 + static_cast<uint32_t>(rng() % 5);
      h.mass[d] = rng() % 7 == 0 ? 0 : rng() % (1ull << 44);  // some keys weigh nothing
    }
    radix::fill_sums_before(h);
    uint32_t total = 0;
    unsigned long long total_mass = 0;
    for (int d = 0; d < radix::kBins; ++d) total += h.count[d], total_mass += h.mass[d];
    const double unit = 1.0 / static_cast<double>(1ull << 40), base = (rng() % 3) * 0.25;
    const double span = static_cast<double>(total_mass) * unit;
    if (total > 0) {
      const uint32_t k = 1 + static_cast<uint32_t>(rng() % total);
      uint32_t before = 0;
      int expect = -1;
      for (int d = radix::kBins - 1; d >= 0; --d) {
        if (before + h.count[d] >= k) {
          expect = d;
          break;
        }
        before += h.count[d];
      }
      const radix::Pick got = radix::pick_kth(h, k);
      ASSERT_EQ(got.digit, expect) << "trial " << trial << " k " << k;
      ASSERT_EQ(got.count_before, before) << "trial " << trial;
      const radix::Pick counted = radix::pick_kth(h, k, CountingSearch{});
      ASSERT_EQ(counted.digit, got.digit) << "trial " << trial << " k " << k;
      ASSERT_EQ(counted.count_before, got.count_before) << "trial " << trial;
    }
    for (const bool strict : {false, true}) {
      // Targets below the base, inside the range, on a bin's edge and beyond the total.
      const double edge = base + static_cast<double>(h.mass_before[rng() % radix::kBins]) * unit;
      for (const double target : {base - 1.0, base + span * (rng() % 1000) / 1000.0, edge, base + span + 1.0}) {
        radix::Pick walk;  // the walk: first nonempty bin reaching the target, else the last
        double c = base;
        for (int d = radix::kBins - 1; d >= 0; --d) {
          if (h.count[d] == 0) continue;
          const double next = c + static_cast<double>(h.mass[d]) * unit;
          walk.digit = d;
          walk.mass_before = c;
          if (strict ? next > target : next >= target) break;
          c = next;
        }
        const radix::Pick got = radix::pick_reaching(h, unit, base, target, strict);
        ASSERT_EQ(got.digit, walk.digit) << "trial " << trial << " target " << target << " strict " << strict;
        ASSERT_NEAR(got.mass_before, walk.mass_before, 1e-12 * (1.0 + span)) << "trial " << trial;
        const radix::Pick counted = radix::pick_reaching(h, unit, base, target, strict, CountingSearch{});
        ASSERT_EQ(counted.digit, got.digit) << "trial " << trial << " target " << target << " strict " << strict;
        ASSERT_EQ(counted.count_before, got.count_before) << "trial " << trial;
        ASSERT_EQ(counted.mass_before, got.mass_before) << "trial " << trial;
      }
    }
  }
}

TEST(RadixSampling, KeysFollowTheCandidateOrder) {
  const float inf = std::numeric_limits<float>::infinity();
  // Ascending candidate order: -inf, ..., -0 == +0, ..., +inf, NaN (so max_key finds a NaN).
  const float ascending[] = {-inf, -3e38f, -2.5f, -1e-40f, 0.0f, 1e-40f, 1.0f, 3e38f, inf};
  for (size_t i = 0; i + 1 < std::size(ascending); ++i)
    EXPECT_LT(radix::key_of(ascending[i], 0), radix::key_of(ascending[i + 1], 0)) << i;
  EXPECT_GT(radix::key_of(std::nanf(""), 5), radix::key_of(inf, 0));
  EXPECT_GT(radix::key_of(-std::nanf(""), 5), radix::key_of(inf, 0));
  EXPECT_TRUE(std::isnan(radix::logit_of(radix::key_of(std::nanf(""), 5))));
  EXPECT_EQ(radix::key_of(-0.0f, 3), radix::key_of(0.0f, 3));
  EXPECT_GT(radix::key_of(1.0f, 3), radix::key_of(1.0f, 4));  // equal logits: lower id first
  for (float x : ascending) {
    EXPECT_EQ(radix::logit_of(radix::key_of(x, 77)), x == 0.0f ? 0.0f : x);
    EXPECT_EQ(radix::token_of(radix::key_of(x, 77)), 77);
  }
}

TEST(RadixSampling, DrawsWhatSampleTokenDraws) {
  // Same expf as the host: only the order of summation and the fixed-point bins differ, so a
  // different token is allowed only within 1e-9 of a boundary (and expected almost never).
  std::mt19937_64 rng(32);
  int64_t draws = 0, mismatches = 0;
  for (int64_t vocab : {1, 2, 50, 1000, 50304}) {
    const int samples = vocab > 10000 ? 150 : 600;
    for (int i = 0; i < samples; ++i) {
      const auto logits = sampling_test::make_logits(vocab, kKinds[i % 3], rng);
      const SamplingParams p = sampling_test::random_params(rng, vocab);
      const uint64_t step = rng() % 100000;
      const int32_t want = sample_token(logits.data(), vocab, p, step);
      const int32_t got = radix_draw(logits, p, step);
      ++draws;
      if (got == want) continue;
      ++mismatches;
      EXPECT_TRUE(sampling_test::near_tie(sampling_test::lay_out(logits.data(), vocab, p, step), 1e-9))
          << "vocab " << vocab << " " << describe(p, step) << ": radix " << got << ", host " << want;
    }
  }
  EXPECT_LE(mismatches, draws / 1000) << mismatches << " of " << draws;
}

TEST(RadixSampling, EdgeRowsGiveValidTokens) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.seed = 5;
  const std::vector<float> one_finite = {-inf, -inf, 2.0f, -inf};
  for (int k : {0, 1, 3, 9}) {
    p.top_k = k;
    for (uint64_t step = 0; step < 50; ++step) EXPECT_EQ(radix_draw(one_finite, p, step), 2);
  }
  // A NaN or +Inf anywhere: no token (as sample_token), greedy or not; all -inf: a token.
  for (uint64_t step = 0; step < 20; ++step) {
    for (const std::vector<float>& bad : std::vector<std::vector<float>>{
             {nan, 1.0f, nan}, {0.5f, inf, 3.0f}, {nan, nan, nan}, {1.0f, 2.0f, -nan}, {-inf, inf}}) {
      EXPECT_EQ(radix_draw(bad, p, step), kNonFiniteToken);
      EXPECT_EQ(sample_token(bad.data(), static_cast<int64_t>(bad.size()), p, step), kNonFiniteToken);
    }
    const int32_t all_neg_inf = radix_draw({-inf, -inf}, p, step);
    EXPECT_TRUE(all_neg_inf >= 0 && all_neg_inf < 2) << all_neg_inf;
  }
  p.temperature = 0.0f;  // greedy: -0 and +0 tie, the lower id wins
  EXPECT_EQ(radix_draw({-1.0f, -0.0f, 0.0f}, p, 0), 1);
  EXPECT_EQ(radix_draw({-1.0f, nan, 0.0f}, p, 0), kNonFiniteToken);
  EXPECT_EQ(radix_draw({inf, -1.0f}, p, 0), kNonFiniteToken);
}

// The kept histograms and gathered keys change how many passes a draw takes, never its token:
// the same draws with every question asked of the whole row.
TEST(RadixSampling, KeptAnswersGiveTheSameTokens) {
  std::mt19937_64 rng(34);
  int gathered_rows = 0;
  for (int64_t vocab : {3, 700, 5000, 50304}) {
    for (int i = 0; i < (vocab > 10000 ? 60 : 300); ++i) {
      const auto logits = sampling_test::make_logits(vocab, kKinds[i % 3], rng);
      const SamplingParams p = sampling_test::random_params(rng, vocab);
      const uint64_t step = rng() % 100000;
      SequentialRow counted(logits.data(), vocab);
      radix::RowParams rp{p.temperature, p.top_k, p.top_p, 0, p.seed, step};
      const int32_t kept = radix::sample_row(counted, rp);
      gathered_rows += counted.gathers() > 0;
      ASSERT_EQ(kept, radix_draw(logits, p, step, nullptr, false))
          << "vocab " << vocab << " " << describe(p, step);
    }
  }
  EXPECT_GT(gathered_rows, 100) << "the gathered lists were exercised";
}

// Passes over a row of 50k tokens (the device's cost): the maximum, the first level (which
// also gives the total weight), and each descent's levels until its bin holds at most
// kGatherKeys keys, gathered once; the draw repeats the nucleus's first levels from what the
// row kept. Eleventh session's algorithm, for comparison: 13 on average with top-k and top-p
// (this test's first case), about 10 with top-p alone.
TEST(RadixSampling, StopsDescendingEarly) {
  struct Case {
    int top_k;
    float top_p;
    double most_passes;  // on average over the rows
  };
  for (const Case c : {Case{1000, 0.9f, 9.0}, Case{0, 0.9f, 6.0}, Case{0, 1.0f, 5.0}}) {
    std::mt19937_64 rng(33);
    SamplingParams p;
    p.temperature = 0.8f;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    int total = 0;
    const int rows = 20;
    for (uint64_t step = 0; step < rows; ++step) {
      const auto logits = sampling_test::make_logits(50304, LogitKind::Normal, rng);
      int passes = 0;
      radix_draw(logits, p, step, &passes);
      total += passes;
    }
    const double mean = static_cast<double>(total) / rows;
    std::printf("top_k %d top_p %.2f: %.2f passes a row\n", c.top_k, c.top_p, mean);
    EXPECT_LE(mean, c.most_passes) << "top_k " << c.top_k << " top_p " << c.top_p;
  }
}

}  // namespace
}  // namespace moetron
