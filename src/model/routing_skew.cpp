#include "moetron/model/routing_skew.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <sstream>

#include "moetron/core/error.hpp"
#include "moetron/model/random_checkpoint.hpp"  // mix64

namespace moetron {
namespace {

constexpr const char* kForm = "expected zipf:S (S >= 0) or hot:K:F (K experts, 0 < F < 1)";

// The whole of `text` as a finite number, or false.
bool parse_number(const std::string& text, double& out) {
  if (text.empty()) return false;
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() && std::isfinite(out);
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, sep)) parts.push_back(part);
  if (!text.empty() && text.back() == sep) parts.push_back("");
  return parts;
}

// Caps shares at `cap` and spreads the excess over the uncapped ones in proportion (water-filling).
void cap_shares(std::vector<double>& shares, double cap) {
  for (size_t round = 0; round < shares.size(); ++round) {
    double excess = 0, free_total = 0;
    for (double& s : shares) {
      if (s > cap) {
        excess += s - cap;
        s = cap;
      } else if (s < cap) {
        free_total += s;
      }
    }
    if (excess <= 1e-15 || free_total <= 0) return;
    for (double& s : shares)
      if (s < cap) s += excess * s / free_total;
  }
}

// Standard normals from a splitmix sequence (Box-Muller): the same numbers on every build.
std::vector<double> normal_sample(size_t n, uint64_t seed) {
  std::vector<double> z(n);
  const auto uniform = [&seed] {
    seed = mix64(seed + 0x9E3779B97F4A7C15ull);
    return (static_cast<double>(seed >> 11) + 0.5) / 9007199254740992.0;  // (0, 1)
  };
  for (size_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform())), a = 2.0 * M_PI * uniform();
    z[i] = r * std::cos(a);
    if (i + 1 < n) z[i + 1] = r * std::sin(a);
  }
  return z;
}

}  // namespace

RoutingSkew parse_routing_skew(const std::string& text) {
  RoutingSkew skew;
  skew.text = text;
  const std::vector<std::string> parts = split(text, ':');
  double a = 0, b = 0;
  if (parts.size() == 2 && parts[0] == "zipf" && parse_number(parts[1], a)) {
    MOETRON_CHECK(a >= 0 && a <= 10, "--routing-skew '" << text << "': the zipf exponent must be in [0, 10]");
    skew.law = SkewLaw::Zipf;
    skew.exponent = a;
    return skew;
  }
  if (parts.size() == 3 && parts[0] == "hot" && parse_number(parts[1], a) && parse_number(parts[2], b)) {
    MOETRON_CHECK(a >= 1 && a == std::floor(a), "--routing-skew '" << text << "': K must be a whole number >= 1");
    MOETRON_CHECK(b > 0 && b < 1, "--routing-skew '" << text << "': F must be in (0, 1)");
    skew.law = SkewLaw::Hot;
    skew.hot_experts = static_cast<int64_t>(a);
    skew.hot_fraction = b;
    return skew;
  }
  MOETRON_FAIL("--routing-skew '" << text << "': " << kForm);
}

void check_routing_skew(const RoutingSkew& skew, int64_t experts, int64_t top_k) {
  if (skew.law != SkewLaw::Hot) return;
  const int64_t K = skew.hot_experts;
  const double F = skew.hot_fraction, k = static_cast<double>(top_k);
  MOETRON_CHECK(K < experts, "--routing-skew " << skew.text << ": K=" << K << " hot experts leave none of the "
                                               << experts << " experts cold");
  // Each expert serves a token at most once: at most 1/k of the slots each.
  MOETRON_CHECK(F / static_cast<double>(K) <= 1.0 / k && (1 - F) / static_cast<double>(experts - K) <= 1.0 / k,
                "--routing-skew " << skew.text << ": with top-" << top_k << " routing an expert takes at most 1/"
                                  << top_k << " of the token-slots, so " << K << " hot experts can take at most "
                                  << std::min(1.0, static_cast<double>(K) / k) << " and the other " << experts - K
                                  << " at most " << std::min(1.0, static_cast<double>(experts - K) / k));
}

std::vector<double> skew_target_shares(const RoutingSkew& skew, int64_t experts, int64_t top_k) {
  std::vector<double> shares(static_cast<size_t>(experts), 1.0 / static_cast<double>(experts));
  if (skew.law == SkewLaw::Zipf) {
    for (int64_t r = 0; r < experts; ++r) shares[static_cast<size_t>(r)] = std::pow(r + 1.0, -skew.exponent);
  } else if (skew.law == SkewLaw::Hot) {
    const int64_t K = skew.hot_experts;
    for (int64_t r = 0; r < experts; ++r)
      shares[static_cast<size_t>(r)] = r < K ? skew.hot_fraction / static_cast<double>(K)
                                             : (1 - skew.hot_fraction) / static_cast<double>(experts - K);
  }
  const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
  for (double& s : shares) s /= total;
  cap_shares(shares, 1.0 / static_cast<double>(top_k));
  return shares;
}

std::vector<float> skew_router_bias(const std::vector<double>& shares, int64_t top_k, double logit_std) {
  constexpr size_t kTokens = 16384;
  constexpr int kIterations = 60;
  const size_t E = shares.size(), k = static_cast<size_t>(top_k);
  MOETRON_CHECK(k >= 1 && k <= E, "routing skew: top-" << top_k << " of " << E << " experts");
  const std::vector<double> z = normal_sample(kTokens * E, /*seed=*/0x5EEDull);
  std::vector<double> bias(E, 0.0), logits(E);
  std::vector<size_t> order(E);
  std::vector<double> taken(E);
  for (int it = 0; it < kIterations; ++it) {
    std::fill(taken.begin(), taken.end(), 0.0);
    for (size_t t = 0; t < kTokens; ++t) {
      for (size_t e = 0; e < E; ++e) logits[e] = logit_std * z[t * E + e] + bias[e];
      std::iota(order.begin(), order.end(), size_t{0});
      std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(),
                       [&](size_t a, size_t b) { return logits[a] > logits[b]; });
      for (size_t j = 0; j < k; ++j) taken[order[j]] += 1.0;
    }
    const double slots = static_cast<double>(kTokens * k);
    for (size_t e = 0; e < E; ++e)
      bias[e] += std::log(shares[e]) - std::log(std::max(taken[e], 0.5) / slots);
    const double mean = std::accumulate(bias.begin(), bias.end(), 0.0) / static_cast<double>(E);
    for (double& b : bias) b -= mean;  // only differences matter; keep them centred
  }
  return std::vector<float>(bias.begin(), bias.end());
}

std::vector<int64_t> skew_expert_order(int64_t experts, uint64_t seed, int64_t layer) {
  std::vector<int64_t> order(static_cast<size_t>(experts));
  std::iota(order.begin(), order.end(), int64_t{0});
  uint64_t state = mix64(seed ^ mix64(static_cast<uint64_t>(layer) + 0x51ED5EEDull));
  for (int64_t i = experts - 1; i > 0; --i) {  // Fisher-Yates
    state = mix64(state + 0x9E3779B97F4A7C15ull);
    std::swap(order[static_cast<size_t>(i)], order[state % static_cast<uint64_t>(i + 1)]);
  }
  return order;
}

void apply_routing_skew(const RoutingSkew& skew, const ModelConfig& config, const ShardSpec& shard, uint64_t seed,
                        Ops& ops, ModelWeights& weights) {
  if (!skew.active()) return;
  const int64_t E = config.num_experts;
  check_routing_skew(skew, E, config.top_k);
  const std::vector<float> by_rank =
      skew_router_bias(skew_target_shares(skew, E, config.top_k), config.top_k, kDummyRouterLogitStd);
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    LayerWeights& w = weights.layers[i];
    if (!w.is_moe) continue;
    const std::vector<int64_t> expert_of = skew_expert_order(E, seed, shard.layer_begin + static_cast<int64_t>(i));
    std::vector<float> bias(static_cast<size_t>(E));
    for (int64_t r = 0; r < E; ++r) bias[static_cast<size_t>(expert_of[static_cast<size_t>(r)])] = by_rank[static_cast<size_t>(r)];
    w.router_bias = ops.alloc(DType::F32, {E});
    ops.copy_from_host(w.router_bias, bias.data());
  }
}

}  // namespace moetron
