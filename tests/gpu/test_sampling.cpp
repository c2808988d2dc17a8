// CudaOps::sample_rows (kernels/sampling.cu) against the host's sample_token: the same token for
// every draw but legitimate rounding ties, and frequencies that follow the filtered softmax.
//
// The tolerance, exactly: the device computes the same float32 weights with its own expf (up to
// 2 ulp from the host's), so a cumulative sum c_i may differ from the host's by a few 1e-7
// relative. A draw may therefore give another token only where one of the host's two
// comparisons was that close to a tie: u * M, or top_p * W (the nucleus' end), within 1e-6
// relative of some boundary c_i. Every mismatch is checked for that, and at most 0.5% of the
// draws may mismatch at all.
#include <cmath>
#include <iostream>
#include <limits>
#include <sstream>

#include "../common/sampling_reference.hpp"
#include "gpu_test_util.hpp"
#include "moetron/kernels.hpp"
#include "moetron/sampling/sampling.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaSampling = GpuVsCpu;
using sampling_test::LogitKind;

constexpr double kTieTolerance = 1e-6;
constexpr double kMaxMismatchFraction = 0.005;

struct Batch {
  int64_t vocab = 0, rows = 0;
  std::vector<float> logits;  // [rows, vocab]
  std::vector<SamplingParams> params;
  std::vector<uint64_t> steps;
};

// Rows cycle through normal logits, many exact ties and -inf entries; settings are mixed.
Batch random_batch(int64_t vocab, int64_t rows, std::mt19937_64& rng) {
  constexpr LogitKind kinds[] = {LogitKind::Normal, LogitKind::Ties, LogitKind::NegInf};
  Batch b;
  b.vocab = vocab;
  b.rows = rows;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = sampling_test::make_logits(vocab, kinds[(r + rng()) % 3], rng);
    b.logits.insert(b.logits.end(), row.begin(), row.end());
    b.params.push_back(sampling_test::random_params(rng, vocab));
    b.steps.push_back(rng() % 100000);
  }
  return b;
}

std::string describe(const Batch& b, int64_t r) {
  const SamplingParams& p = b.params[r];
  std::ostringstream os;
  os << "vocab " << b.vocab << " row " << r << "/" << b.rows << ": temperature " << p.temperature
     << " top_k " << p.top_k << " top_p " << p.top_p << " seed " << p.seed << " step "
     << b.steps[r];
  return os.str();
}

TEST_F(CudaSampling, SampleRowsDrawsWhatSampleTokenDraws) {
  std::mt19937_64 rng(20260301);
  int64_t draws = 0, mismatches = 0;
  // Every vocabulary at 1, 7 and 64 rows (the larger ones split each row over several blocks),
  // an odd vocabulary (unvectorized slices) and 300 rows (a block per row again).
  std::vector<std::pair<int64_t, int64_t>> shapes = {{32001, 1}, {32001, 7}, {50304, 300}};
  for (int64_t vocab : {50, 1000, 50304, 151936})
    for (int64_t rows : {1, 7, 64}) shapes.emplace_back(vocab, rows);
  EXPECT_GT(kernels::sample_rows_workspace_bytes(7, 50304), 0u) << "decode rows are not split";
  EXPECT_EQ(kernels::sample_rows_workspace_bytes(7, 1000), 0u) << "a small vocabulary is split";
  for (const auto& [vocab, rows] : shapes) {
    {
      const int batches = vocab * rows > 1000000 ? 3 : 12;
      for (int i = 0; i < batches; ++i) {
        const Batch b = random_batch(vocab, rows, rng);
        Pair logits = floats(b.logits, {rows, vocab});
        Pair ids = output(DType::I32, {rows});
        gpu().sample_rows(logits.gpu, b.params, b.steps, ids.gpu);
        const std::vector<int32_t> got = read_ints(gpu(), ids.gpu);
        for (int64_t r = 0; r < rows; ++r) {
          const float* row = &b.logits[r * vocab];
          const int32_t want = sample_token(row, vocab, b.params[r], b.steps[r]);
          ++draws;
          if (got[r] == want) continue;
          ++mismatches;
          const auto draw = sampling_test::lay_out(row, vocab, b.params[r], b.steps[r]);
          EXPECT_TRUE(sampling_test::near_tie(draw, kTieTolerance))
              << describe(b, r) << ": GPU " << got[r] << ", host " << want
              << ", not within a rounding tie";
        }
      }
    }
  }
  EXPECT_LE(mismatches, kMaxMismatchFraction * draws) << mismatches << " of " << draws;
  std::cout << "sample_rows: " << mismatches << " of " << draws << " draws differ (ties)\n";
}

// Rows split over several blocks meet at barriers and add partials through global memory: a
// race there shows as a token that changes from one launch to the next on the same inputs.
TEST_F(CudaSampling, SplitRowsDrawTheSameTokensEveryLaunch) {
  std::mt19937_64 rng(31);
  for (int64_t rows : {1, 64}) {
    const Batch b = random_batch(151936, rows, rng);
    Pair logits = floats(b.logits, {rows, b.vocab});
    std::vector<int32_t> first;
    for (int launch = 0; launch < 6; ++launch) {
      Pair ids = output(DType::I32, {rows});
      gpu().sample_rows(logits.gpu, b.params, b.steps, ids.gpu);
      const std::vector<int32_t> got = read_ints(gpu(), ids.gpu);
      if (launch == 0)
        first = got;
      else
        EXPECT_EQ(got, first) << rows << " rows, launch " << launch;
    }
  }
}

// Rows at the edges: a finite token among -inf, all -inf (a token), and rows holding a NaN or
// +Inf, which give kNonFiniteToken (-1) instead of a token, as the host's sample_token does.
TEST_F(CudaSampling, EdgeRowsGiveValidTokensOrTheNonFiniteSentinel) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  const int64_t vocab = 5;
  // A finite token among -inf, all NaN, all -inf, NaN among finite, +inf, a negative NaN.
  const std::vector<float> values = {-inf, -inf, 2.0f, -inf, -inf,  nan,  nan,  nan, nan, nan,
                                     -inf, -inf, -inf, -inf, -inf,  nan,  1.0f, nan, nan, 0.5f,
                                     0.5f, inf,  3.0f, 1.0f, -1.0f, 0.5f, 1.0f, 2.0f, -nan, 0.0f};
  const int64_t rows = static_cast<int64_t>(values.size()) / vocab;
  Pair logits = floats(values, {rows, vocab});
  for (float temperature : {0.0f, 1.0f}) {
    for (int k : {0, 1, 3, 9}) {
      SamplingParams p;
      p.temperature = temperature;
      p.top_k = k;
      p.top_p = 0.9f;
      for (uint64_t step = 0; step < 8; ++step) {
        Pair ids = output(DType::I32, {rows});
        gpu().sample_rows(logits.gpu, std::vector<SamplingParams>(rows, p),
                          std::vector<uint64_t>(rows, step), ids.gpu);
        const std::vector<int32_t> got = read_ints(gpu(), ids.gpu);
        EXPECT_EQ(got[0], 2) << "top_k " << k;
        EXPECT_TRUE(got[2] >= 0 && got[2] < vocab) << got[2];
        for (int64_t r : {1, 3, 4, 5}) {
          EXPECT_EQ(got[r], kNonFiniteToken) << "row " << r << " temperature " << temperature;
          EXPECT_EQ(sample_token(&values[r * vocab], vocab, p, step), kNonFiniteToken) << "host, row " << r;
        }
      }
    }
  }
}

// The greedy kernel flags a NaN or +Inf wherever it sits in the row (its scalar head, vector
// body or tail), in F32 and BF16, and still gives the CPU's argmax for every other row.
TEST_F(CudaSampling, ArgmaxGivesTheNonFiniteSentinel) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  std::mt19937_64 rng(78);
  for (int64_t vocab : {7, 1001, 50304}) {
    const int64_t rows = 8;
    std::vector<float> values = random_values(rows * vocab, 3.0f);
    // Row r % 2 == 1 holds one bad value: NaN first, +Inf in the middle, NaN last, -NaN random.
    const float bad[] = {nan, inf, nan, -nan};
    for (int64_t r = 1; r < rows; r += 2) {
      const int64_t at = r == 1 ? 0 : r == 3 ? vocab / 2 : r == 5 ? vocab - 1 : static_cast<int64_t>(rng() % vocab);
      values[r * vocab + at] = bad[r / 2];
    }
    for (int64_t c = 0; c < vocab; c += 3) values[2 * vocab + c] = -inf;  // masked tokens are fine
    for (DType dt : {DType::F32, DType::BF16}) {
      Tensor l = gpu().alloc(dt, {rows, vocab});
      std::vector<float> seen = values;  // what the kernel reads (bf16-rounded)
      if (dt == DType::F32) {
        gpu().copy_from_host(l, values.data());
      } else {
        std::vector<uint16_t> bits(values.size());
        for (size_t i = 0; i < bits.size(); ++i) {
          bits[i] = float_to_bf16(values[i]);
          seen[i] = bf16_to_float(bits[i]);
        }
        gpu().copy_from_host(l, bits.data());
      }
      Tensor ids = gpu().alloc(DType::I32, {rows});
      poison(gpu(), ids);
      gpu().argmax(l, ids);
      const std::vector<int32_t> got = read_ints(gpu(), ids);
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t want = argmax_token(&seen[r * vocab], vocab);
        EXPECT_EQ(want == kNonFiniteToken, r % 2 == 1) << "host reference, row " << r;
        EXPECT_EQ(got[r], want) << "vocab " << vocab << " row " << r << " " << dtype_name(dt);
      }
    }
  }
}

TEST_F(CudaSampling, FrequenciesFollowTheFilteredSoftmax) {
  // One small row, many seeds: each token's count against the nucleus' softmax, so a sampler
  // that is deterministic but wrong (always the argmax, a uniform draw) cannot pass.
  constexpr int64_t kVocab = 12, kRows = 4096, kLaunches = 25;
  std::mt19937_64 rng(77);
  std::vector<float> row = sampling_test::make_logits(kVocab, LogitKind::Normal, rng);
  for (float& x : row) x *= 0.4f;  // flat enough that the nuclei hold 2 to 12 tokens
  std::vector<float> values;
  for (int64_t r = 0; r < kRows; ++r) values.insert(values.end(), row.begin(), row.end());
  Pair logits = floats(values, {kRows, kVocab});
  struct Setting {
    float temperature;
    int top_k;
    float top_p;
  };
  const Setting settings[] = {{1.0f, 0, 1.0f}, {0.7f, 6, 1.0f}, {1.3f, 0, 0.8f}, {0.9f, 8, 0.6f}};
  for (const auto& [temperature, top_k, top_p] : settings) {
    SCOPED_TRACE("temperature " + std::to_string(temperature) + " top_k " +
                 std::to_string(top_k) + " top_p " + std::to_string(top_p));
    std::vector<SamplingParams> params(kRows);
    for (int64_t r = 0; r < kRows; ++r) {
      params[r].temperature = temperature;
      params[r].top_k = top_k;
      params[r].top_p = top_p;
      params[r].seed = 1000 + static_cast<uint64_t>(r);
    }
    std::vector<int64_t> count(kVocab, 0);
    for (int64_t launch = 0; launch < kLaunches; ++launch) {
      Pair ids = output(DType::I32, {kRows});
      gpu().sample_rows(logits.gpu, params, std::vector<uint64_t>(kRows, launch), ids.gpu);
      for (int32_t t : read_ints(gpu(), ids.gpu)) {
        ASSERT_TRUE(t >= 0 && t < kVocab) << t;
        ++count[t];
      }
    }
    const auto draw = sampling_test::lay_out(row.data(), kVocab, params[0], 0);
    const std::vector<double> prob = sampling_test::nucleus_probabilities(draw, kVocab);
    const double n = static_cast<double>(kRows * kLaunches);
    double chi2 = 0.0;
    for (int64_t v = 0; v < kVocab; ++v) {
      if (prob[v] == 0.0) {
        EXPECT_EQ(count[v], 0) << "token " << v << " is outside the nucleus";
        continue;
      }
      chi2 += (count[v] - n * prob[v]) * (count[v] - n * prob[v]) / (n * prob[v]);
    }
    // Degrees of freedom: the nucleus' size - 1 (<= 11); 40 is exceeded with probability < 1e-4.
    EXPECT_LT(chi2, 40.0) << "nucleus of " << draw.nucleus;
  }
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
