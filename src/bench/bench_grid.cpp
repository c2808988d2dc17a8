#include "moetron/bench/bench_grid.hpp"

#include <algorithm>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/error.hpp"
#include "moetron/parallel/plan.hpp"

namespace moetron {

namespace {

template <class T>
void add_unique(std::vector<T>& list, const T& value) {
  if (std::find(list.begin(), list.end(), value) == list.end()) list.push_back(value);
}

}  // namespace

std::vector<int64_t> geometric_sizes(int64_t first, int64_t last, int64_t factor) {
  MOETRON_CHECK(first >= 1 && first <= last && factor >= 2, "geometric_sizes(" << first << ", " << last << ", " << factor << ")");
  std::vector<int64_t> out;
  for (int64_t v = first; v < last; v *= factor) out.push_back(v);
  out.push_back(last);
  return out;
}

BenchShapes bench_shapes(const ModelConfig& c, const std::vector<int>& tp_degrees) {
  BenchShapes s;
  const int64_t H = c.hidden_size, hd = c.head_dim;
  const bool any_dense = std::count(c.layer_is_moe.begin(), c.layer_is_moe.end(), false) > 0;
  for (int tp : tp_degrees) {
    Plan plan;
    plan.tp = tp;
    if (!plan_problem(plan, c).empty()) continue;
    const ShardSpec shard = layout_for(plan, c, 0).shard;
    const int64_t q = shard.q_head_count * hd, kv = shard.kv_head_count * hd;
    for (const auto& nk : {std::make_pair(q, H), std::make_pair(kv, H), std::make_pair(H, q),
                           std::make_pair(c.num_experts, H), std::make_pair(shard.vocab_rows, H)})
      add_unique(s.gemms, nk);
    if (any_dense && shard.mlp_col_count > 0) {
      add_unique(s.gemms, std::make_pair(2 * shard.mlp_col_count, H));
      add_unique(s.gemms, std::make_pair(H, shard.mlp_col_count));
    }
    if (shard.shared_col_count > 0) {
      add_unique(s.gemms, std::make_pair(2 * shard.shared_col_count, H));
      add_unique(s.gemms, std::make_pair(H, shard.shared_col_count));
    }
    add_unique(s.experts, std::make_pair(H, shard.expert_col_count));
    add_unique(s.attention, std::array<int64_t, 3>{shard.q_head_count, shard.kv_head_count, hd});
  }
  return s;
}

BenchSizes bench_sizes(const ModelConfig& c, const SizeChoice& choice) {
  // Defaults: GPU tokens 1..16k by 2 (quick: by 4); CPU 1..1024 by 4 (quick: 1..256 by 16).
  const bool gpu = choice.gpu, quick = choice.quick;
  const int64_t default_tokens = gpu ? 16384 : (quick ? 256 : 1024);
  const int64_t max_tokens = choice.max_tokens > 0 ? choice.max_tokens : default_tokens;
  const int64_t step = gpu ? (quick ? 4 : 2) : (quick ? 16 : 4);
  const int64_t context_cap = std::max<int64_t>(1, c.max_position_embeddings);
  BenchSizes s;
  s.tokens = geometric_sizes(1, max_tokens, step);
  // The CPU's quick grid by 4 too: its expert calls scale with their rows (no weight-read floor),
  // so a 4-row call read at the 16-row point was priced 3-4 times its time.
  s.tokens_per_expert = geometric_sizes(1, gpu ? 1024 : 64, gpu && quick ? 16 : 4);
  if (gpu && !quick) {
    // The CUDA call changes kernels with the rows an expert (kernels::grouped_gemm_tile_rows):
    // 32-row tiles up to 24 rows, 96-row tiles from 25 to 255 (one tile an expert up to 96 rows;
    // where those would leave SMs idle, 32-row tiles up to 32 rows and 64-row ones past it:
    // kernels::wide_tiles_fill; decode batch 256 of OLMoE lands at 32), then one GEMM per expert
    // where those beat the tiles (expert_call_by_gemms: from 128 rows for large experts, from 256
    // for mid-sized ones or few experts; prefill of 512-8k tokens). Points at 24, 32, 96, 128, 384,
    // 512 and 768, so that no regime is read off a line drawn between other kernels' points.
    for (int64_t rows : {int64_t{24}, int64_t{32}, int64_t{96}, int64_t{128}, int64_t{384}, int64_t{512}, int64_t{768}})
      add_unique(s.tokens_per_expert, rows);
    std::sort(s.tokens_per_expert.begin(), s.tokens_per_expert.end());
  }
  // On a GPU by 2: a call's time is far from linear in its experts where a few experts leave the
  // SMs part idle (at 16 rows one Mixtral expert read at 54% of an H200's HBM, four at 88%), and plans with
  // 2 or 8 local experts (ep) sat between points 4x apart, over-predicted by 13-20%
  // (perf/PREDICTOR.md, twenty-fourth session).
  s.experts = quick ? std::vector<int64_t>{1} : geometric_sizes(1, c.num_experts, gpu ? 2 : 4);
  add_unique(s.experts, c.num_experts);
  s.max_expert_rows = max_tokens * c.top_k;
  s.gemv_tokens = geometric_sizes(1, kExpertGemvMaxTokens, 2);
  s.decode_batch = geometric_sizes(1, gpu ? 256 : 16, quick ? 16 : 4);
  // The CPU's quick grid from 16: below its smallest context a prompt's attention is read at that
  // point's time, which for 16-token prompts against a 64-token point was 4-16 times the work.
  // The GPU's full grid by 2: a prompt's attention grows with the square of its length, and a
  // 4,096-token prompt read on the line between the 2,048- and 8,192-token points was priced
  // 1.3-1.6x what those points' rates give (Mixtral's 4,096-token prefill +15%, perf/PREDICTOR.md
  // twenty-seventh session).
  s.contexts = gpu ? (quick ? std::vector<int64_t>{512, 8192} : geometric_sizes(128, 8192, 2))
                   : (quick ? std::vector<int64_t>{16, 64, 256} : geometric_sizes(16, 256, 4));
  for (int64_t& ctx : s.contexts) ctx = std::min(ctx, context_cap);
  s.contexts.erase(std::unique(s.contexts.begin(), s.contexts.end()), s.contexts.end());
  s.prefill_sequences = quick ? std::vector<int64_t>{1, 4} : geometric_sizes(1, gpu ? 8 : 4, 2);
  const int64_t default_bytes = (gpu && !quick && !choice.host_staged) ? (256ll << 20)
                                : (gpu || !quick)                     ? (16ll << 20)
                                                                      : (1ll << 20);
  s.collective_bytes = geometric_sizes(1024, std::max<int64_t>(1024, choice.max_bytes > 0 ? choice.max_bytes : default_bytes), 4);
  s.copy_bytes = gpu ? (quick ? (256ll << 20) : (1ll << 30)) : (quick ? (16ll << 20) : (64ll << 20));
  return s;
}

}  // namespace moetron
