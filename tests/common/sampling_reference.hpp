// Shared by the tests of samplers that must draw what sample_token draws (the radix algorithm on
// the host, the CUDA sampler): inputs that stress the candidate order, and sample_token's draw
// laid out in full, to tell a sampler's bug from a legitimate rounding tie.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "moetron/sampling/sampling.hpp"

namespace moetron {
namespace sampling_test {

enum class LogitKind { Normal, Ties, NegInf };

// One row: normal(0, 2); Ties: 8 distinct values, so thousands of tokens share each; NegInf:
// normal with about a third of the tokens at -inf.
inline std::vector<float> make_logits(int64_t vocab, LogitKind kind, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::uniform_int_distribution<int> level(0, 7), third(0, 2);
  std::vector<float> v(static_cast<size_t>(vocab));
  for (float& x : v) {
    if (kind == LogitKind::Ties)
      x = 0.75f * static_cast<float>(level(rng)) - 2.0f;
    else if (kind == LogitKind::NegInf && third(rng) == 0)
      x = -std::numeric_limits<float>::infinity();
    else
      x = normal(rng);
  }
  if (kind == LogitKind::NegInf) v[0] = 1.0f;  // at least one finite logit
  return v;
}

// A mix: greedy, plain temperature, top-k, top-p, both; temperature in [0.5, 2]; top-k from 1 to
// past the vocabulary.
inline SamplingParams random_params(std::mt19937_64& rng, int64_t vocab) {
  SamplingParams p;
  p.seed = rng();
  const int mode = static_cast<int>(rng() % 5);
  if (mode == 0) return p;  // greedy
  p.temperature = std::uniform_real_distribution<float>(0.5f, 2.0f)(rng);
  const int64_t ks[] = {1, 2, 7, 50, 1000, vocab - 1, vocab, vocab + 5};
  if (mode == 2 || mode == 4) p.top_k = static_cast<int>(std::max<int64_t>(1, ks[rng() % 8]));
  if (mode >= 3) p.top_p = std::uniform_real_distribution<float>(0.05f, 0.99f)(rng);
  return p;
}

// sample_token's draw with the whole vocabulary sorted: the kept candidates in order with their
// cumulative weights c_i (double, in order), the nucleus [0, nucleus), and the two masses the
// draw compares with the c_i: top_p * W (>=; negative when top_p == 1) and u * M (>).
struct Draw {
  std::vector<int32_t> order;
  std::vector<double> cumulative;
  size_t nucleus = 0;
  double top_p_mass = -1.0;
  double target = 0.0;
};

inline Draw lay_out(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t step) {
  Draw d;
  if (p.temperature == 0.0f) return d;  // greedy: no comparison of sums
  d.order.resize(static_cast<size_t>(vocab));
  std::iota(d.order.begin(), d.order.end(), 0);
  std::stable_sort(d.order.begin(), d.order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (p.top_k > 0 && p.top_k < vocab) d.order.resize(static_cast<size_t>(p.top_k));
  const float max_logit = logits[d.order[0]];
  double c = 0.0;
  for (int32_t t : d.order)
    d.cumulative.push_back(c += std::exp((logits[t] - max_logit) / p.temperature));
  d.nucleus = d.order.size();
  if (p.top_p < 1.0f) {
    d.top_p_mass = p.top_p * c;
    d.nucleus = static_cast<size_t>(
        std::lower_bound(d.cumulative.begin(), d.cumulative.end(), d.top_p_mass) -
        d.cumulative.begin()) + 1;
    d.nucleus = std::min(d.nucleus, d.order.size());
  }
  d.target = uniform_from_counter(p.seed, step) * d.cumulative[d.nucleus - 1];
  return d;
}

// True when x lies within rel * c_i of one of c[0, end) (nondecreasing).
inline bool near_boundary(const std::vector<double>& c, size_t end, double x, double rel) {
  const auto last = c.begin() + static_cast<std::ptrdiff_t>(end);
  const auto above = std::lower_bound(c.begin(), last, x);
  const auto close = [&](std::vector<double>::const_iterator it) {
    return it >= c.begin() && it < last && std::fabs(x - *it) <= rel * std::fabs(*it);
  };
  return close(above) || (above != c.begin() && close(above - 1));
}

// Whether another sampler may draw another token here: one of the draw's two comparisons is
// within rel of a tie, where a weight an ulp of expf apart can flip it.
inline bool near_tie(const Draw& d, double rel) {
  if (d.order.empty()) return false;  // greedy must agree exactly
  return near_boundary(d.cumulative, d.nucleus, d.target, rel) ||
         (d.top_p_mass >= 0.0 && near_boundary(d.cumulative, d.order.size(), d.top_p_mass, rel));
}

// The probability of each token under the draw: w_i / M in the nucleus, 0 elsewhere.
inline std::vector<double> nucleus_probabilities(const Draw& d, int64_t vocab) {
  std::vector<double> prob(static_cast<size_t>(vocab), 0.0);
  const double mass = d.cumulative[d.nucleus - 1];
  for (size_t i = 0; i < d.nucleus; ++i)
    prob[static_cast<size_t>(d.order[i])] = (d.cumulative[i] - (i ? d.cumulative[i - 1] : 0.0)) / mass;
  return prob;
}

}  // namespace sampling_test
}  // namespace moetron
