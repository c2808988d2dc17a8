#include "moetron/engine/prefill_budget.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
#include "moetron/engine/decode_batches.hpp"

namespace moetron {
namespace {

// The slope needs prefill sizes that differ by a real amount within the buckets: at least the
// variation two steps of equal weight this many tokens apart give (Σ w·(p - mean p)² >=
// spread² / 2). Steps a few tokens apart (a prompt's last chunk, a budget moved by rounding)
// differ in time by less than a step's timing noise, so the slope they give is the noise's: near
// zero (budgets of the whole step) or huge (the least chunk). 32 tokens is twice the default
// least chunk, and half the smallest difference between start-up budgets (64, 128, 256), so the
// start-up probes still give the fit its slope within two steps of one bucket.
constexpr double kLeastSpreadTokens = 32;

bool enough_spread(double variation) { return variation >= kLeastSpreadTokens * kLeastSpreadTokens / 2; }

}  // namespace

int64_t parse_prefill_chunk(const std::string& text) {
  if (text == "auto") return kPrefillChunkAuto;
  const std::optional<uint64_t> v = parse_decimal(text);
  MOETRON_CHECK(v && *v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                "--prefill-chunk must be auto or an integer >= 0 (0: whole prompts), got '" << text << "'");
  return static_cast<int64_t>(*v);
}

std::string prefill_chunk_text(int64_t prefill_chunk) {
  return prefill_chunk == kPrefillChunkAuto ? "auto" : std::to_string(prefill_chunk);
}

int64_t adaptive_prefill_budget(const AdaptiveChunk& policy, int64_t decodes, const std::optional<MeasuredStepCost>& cost,
                                int64_t max_tokens, int64_t probe) {
  const int64_t least = std::min(policy.min_chunk, max_tokens);
  if (decodes <= 0) return max_tokens;  // no running request's next token to protect
  if (!cost || !(cost->decode_s > 0) || !(cost->per_prefill_token_s > 0))
    return std::clamp(policy.startup_chunk << (probe % 3), least, max_tokens);
  const double tokens = (policy.itl_target_ratio - 1) * cost->decode_s / cost->per_prefill_token_s;
  if (!(tokens < static_cast<double>(max_tokens))) return max_tokens;  // also +inf
  return std::max(least, static_cast<int64_t>(std::floor(tokens)));
}

StepCostModel::StepCostModel(double forgetting)
    : forgetting_(forgetting), buckets_(decode_bucket(std::numeric_limits<int64_t>::max()) + 1) {
  MOETRON_ASSERT(forgetting > 0 && forgetting <= 1);
}

void StepCostModel::observe(int64_t decodes, int64_t prefill_tokens, double seconds) {
  ++observed_;
  Sums& s = buckets_[decode_bucket(decodes)];
  const double p = static_cast<double>(prefill_tokens);
  s.w = forgetting_ * s.w + 1;
  s.p = forgetting_ * s.p + p;
  s.t = forgetting_ * s.t + seconds;
  s.pp = forgetting_ * s.pp + p * p;
  s.pt = forgetting_ * s.pt + p * seconds;
  refit();
}

void StepCostModel::refit() {
  // The common slope: covariance of p and t within each bucket over p's variance within each.
  double covariance = 0, variance = 0;
  for (const Sums& s : buckets_) {
    if (s.w <= 0) continue;
    covariance += s.pt - s.p * s.t / s.w;
    variance += s.pp - s.p * s.p / s.w;
  }
  if (enough_spread(variance) && covariance > 0) slope_ = covariance / variance;
}

std::optional<MeasuredStepCost> StepCostModel::estimate(int64_t decodes) const {
  if (decodes < 1 || !(slope_ > 0)) return std::nullopt;
  for (size_t b = decode_bucket(decodes); b >= 1; --b) {
    const Sums& s = buckets_[b];
    if (s.w <= 0) continue;
    const double decode_s = (s.t - slope_ * s.p) / s.w;
    if (!(decode_s > 0)) return std::nullopt;
    return MeasuredStepCost{decode_s, slope_};
  }
  return std::nullopt;
}

}  // namespace moetron
