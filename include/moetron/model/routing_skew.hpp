// Skewed routing on demand, for random-weight models (`--routing-skew`, with --load-format
// dummy): a per-expert bias added to every MoE layer's router logits (Ops::add_row_bias) so that
// the share of routed token-slots each expert gets follows a law, to study imbalance at scale
// without real checkpoints.
//
// Laws, over the experts in order of heat (rank 0 the hottest):
//   zipf:S    share of rank r proportional to (r + 1)^-S (S >= 0; 0 is uniform)
//   hot:K:F   a fraction F of the token-slots to K experts (F/K each), the rest spread evenly
// An expert serves a token at most once, so no share can pass 1/k (top-k): zipf shares above
// it are capped and the excess spread over the others in proportion; a hot law that would need
// more is refused.
//
// How the bias is found: a dummy router's logits are W h with W's entries N(0, 4/H) and h a
// normalised hidden state (mean square 1.04, from the norm weights 1 + 0.2 N), so for any token
// they are close to independent normals of standard deviation kDummyRouterLogitStd. The bias b
// is the fixed point of b_e += log(target_e) - log(measured_e), where measured_e is the share of
// top-k slots expert e takes over a fixed sample of such normal logits plus b (16384 tokens, the
// same sample every iteration). Which expert gets which rank is a permutation per layer, drawn
// from the weights' seed and the layer, so hot experts are spread over expert-parallel ranks as
// in real models rather than all on the first.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weights.hpp"

namespace moetron {

enum class SkewLaw { None, Zipf, Hot };

struct RoutingSkew {
  SkewLaw law = SkewLaw::None;
  double exponent = 0;       // zipf:S
  int64_t hot_experts = 0;   // hot:K:F
  double hot_fraction = 0;
  std::string text;          // the spec as given ("" for none)
  bool active() const { return law != SkewLaw::None; }
};

// "zipf:S" or "hot:K:F"; errors name --routing-skew and say what was expected.
RoutingSkew parse_routing_skew(const std::string& text);
// Errors (naming --routing-skew) when the law cannot hold for `experts` experts, top-k.
void check_routing_skew(const RoutingSkew& skew, int64_t experts, int64_t top_k);

// The share of token-slots of each heat rank (rank 0 the hottest): sums to 1, each <= 1/top_k.
std::vector<double> skew_target_shares(const RoutingSkew& skew, int64_t experts, int64_t top_k);

// Standard deviation of a dummy router's logits (see above): 2 * sqrt(1.04).
constexpr double kDummyRouterLogitStd = 2.0396078054371141;
// Bias per heat rank such that the top-k of (logit_std * z + bias), z independent standard
// normals, gives each rank its share (deterministic: the same on every rank).
std::vector<float> skew_router_bias(const std::vector<double>& shares, int64_t top_k, double logit_std);
// The expert of each heat rank in `layer`: a permutation drawn from (seed, layer).
std::vector<int64_t> skew_expert_order(int64_t experts, uint64_t seed, int64_t layer);

// Gives every MoE layer this shard holds its router bias (LayerWeights::router_bias), for the
// dummy weights of `seed`.
void apply_routing_skew(const RoutingSkew& skew, const ModelConfig& config, const ShardSpec& shard, uint64_t seed,
                        Ops& ops, ModelWeights& weights);

}  // namespace moetron
