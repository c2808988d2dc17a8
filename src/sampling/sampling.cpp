#include "moetron/sampling/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "moetron/core/error.hpp"
#include "moetron/sampling/philox.hpp"

namespace moetron {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  const philox::Words4 out = philox::philox4x32_10(philox::Words4{{ctr[0], ctr[1], ctr[2], ctr[3]}},
                                                   key[0], key[1]);
  return {out.w[0], out.w[1], out.w[2], out.w[3]};
}

float uniform_from_counter(uint64_t seed, uint64_t counter) { return philox::uniform(seed, counter); }

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

bool holds_non_finite(const float* logits, int64_t vocab) {
  return std::any_of(logits, logits + vocab, breaks_sampling);
}

// Sampling order: logit descending, lower token id first among equals.
struct LogitDescending {
  const float* logits;
  bool operator()(int32_t a, int32_t b) const {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  }
};

// The kept candidates in sampling order with their cumulative weights, put in order lazily: a
// nucleus is usually a few dozen tokens of a vocabulary of 10^5, so only as long a prefix as a
// query reaches is sorted.
class CandidateOrder {
 public:
  CandidateOrder(const float* logits, int64_t vocab, const SamplingParams& p)
      : logits_(logits), order_(vocab), before_{logits}, temperature_(p.temperature) {
    keep_ = p.top_k > 0 ? std::min<int64_t>(p.top_k, vocab) : vocab;
    max_logit_ = logits[argmax(logits, vocab)];
    std::iota(order_.begin(), order_.end(), 0);
    if (keep_ < vocab) std::nth_element(order_.begin(), order_.begin() + keep_ - 1, order_.end(), before_);
    for (int64_t i = 0; i < keep_; ++i) total_ += weight(order_[i]);
  }

  int64_t size() const { return keep_; }
  double total() const { return total_; }  // W: the sum of the kept weights
  int32_t token(int64_t i) const { return order_[i]; }
  double cumulative(int64_t i) const { return cumulative_[i]; }

  // The first candidate i < end whose cumulative weight reaches `mass` (>= mass, or > mass
  // when `strictly`), or end - 1 when rounding leaves none.
  int64_t first_reaching(double mass, bool strictly, int64_t end) {
    for (;;) {
      const auto reached = strictly ? std::upper_bound(cumulative_.begin(), cumulative_.end(), mass)
                                    : std::lower_bound(cumulative_.begin(), cumulative_.end(), mass);
      const int64_t i = reached - cumulative_.begin();
      if (i < sorted() || sorted() >= end) return std::min(i, end - 1);
      extend();
    }
  }

 private:
  // The softmax numerator of logits / temperature, with the maximum subtracted.
  float weight(int32_t token) const { return std::exp((logits_[token] - max_logit_) / temperature_); }
  int64_t sorted() const { return static_cast<int64_t>(cumulative_.size()); }

  // Doubles the sorted prefix: the next best candidates come to the front, then in order.
  void extend() {
    const int64_t from = sorted(), to = std::min(keep_, std::max<int64_t>(64, 2 * from));
    const auto first = order_.begin() + from, last = order_.begin() + keep_;
    std::nth_element(first, order_.begin() + to - 1, last, before_);
    std::sort(first, order_.begin() + to, before_);
    double c = from ? cumulative_.back() : 0.0;
    for (int64_t i = from; i < to; ++i) cumulative_.push_back(c += weight(order_[i]));
  }

  const float* logits_;
  std::vector<int32_t> order_;  // [0, keep_): the kept candidates; a sorted prefix, then the rest
  LogitDescending before_;
  float temperature_, max_logit_ = 0.0f;
  int64_t keep_ = 0;
  double total_ = 0.0;
  std::vector<double> cumulative_;  // over the sorted prefix
};

}  // namespace

int32_t argmax_token(const float* logits, int64_t vocab) {
  MOETRON_ASSERT(vocab > 0);
  return holds_non_finite(logits, vocab) ? kNonFiniteToken : argmax(logits, vocab);
}

int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t step) {
  MOETRON_ASSERT(vocab > 0);
  if (p.temperature == 0.0f || holds_non_finite(logits, vocab)) return argmax_token(logits, vocab);

  CandidateOrder candidates(logits, vocab, p);
  int64_t nucleus_end = candidates.size();
  double nucleus_mass = candidates.total();
  if (p.top_p < 1.0f) {
    const int64_t last = candidates.first_reaching(p.top_p * candidates.total(), false, nucleus_end);
    nucleus_end = last + 1;
    nucleus_mass = candidates.cumulative(last);
  }
  const double target = static_cast<double>(uniform_from_counter(p.seed, step)) * nucleus_mass;
  return candidates.token(candidates.first_reaching(target, true, nucleus_end));
}

}  // namespace moetron
