#include "moetron/engine/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "moetron/core/error.hpp"

namespace moetron {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;    // round multipliers
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // key schedule increments
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * ctr[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
  }
  return ctr;
}

float uniform_from_counter(uint64_t seed, uint64_t counter) {
  const auto bits = philox4x32_10(
      {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u},
      {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  return static_cast<float>(bits[0] >> 8) * 0x1p-24f;
}

void check_sampling_params(const SamplingParams& p, const std::string& where) {
  MOETRON_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.0f,
                where << ": temperature must be a finite number >= 0 (0 = greedy), got " << p.temperature);
  MOETRON_CHECK(p.top_k >= 0, where << ": top_k must be >= 0 (0 = off), got " << p.top_k);
  MOETRON_CHECK(p.top_p > 0.0f && p.top_p <= 1.0f,
                where << ": top_p must be in (0, 1] (1 = off), got " << p.top_p);
}

namespace {

int32_t argmax(const float* logits, int64_t vocab) {
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

// Token ids ordered by logit, descending, lower id first among equals; only the first
// `keep` are ordered (and returned).
std::vector<int32_t> top_candidates(const float* logits, int64_t vocab, int64_t keep) {
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  order.resize(keep);
  return order;
}

}  // namespace

int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t step) {
  MOETRON_ASSERT(vocab > 0);
  if (p.temperature == 0.0f) return argmax(logits, vocab);

  const int64_t keep = p.top_k > 0 ? std::min<int64_t>(p.top_k, vocab) : vocab;
  const std::vector<int32_t> candidates = top_candidates(logits, vocab, keep);
  const float max_logit = logits[candidates[0]];
  std::vector<double> cumulative(keep);
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    total += std::exp((logits[candidates[i]] - max_logit) / p.temperature);
    cumulative[i] = total;
  }

  int64_t last = keep - 1;  // the nucleus: candidates 0..last
  if (p.top_p < 1.0f) {
    const double mass = static_cast<double>(p.top_p) * total;
    last = std::lower_bound(cumulative.begin(), cumulative.end(), mass) - cumulative.begin();
    last = std::min(last, keep - 1);
  }

  const double target = static_cast<double>(uniform_from_counter(p.seed, step)) * cumulative[last];
  const int64_t chosen = std::upper_bound(cumulative.begin(), cumulative.begin() + last + 1, target) -
                         cumulative.begin();
  return candidates[std::min(chosen, last)];
}

}  // namespace moetron
