// The CUDA expert call's kernel paths and shape limits, in one place for the code that must agree
// with kernels/grouped_gemm.cu without CUDA: the bench (which side of the switch it times), the
// cost model (which measured points it interpolates between) and the predictor's plan check.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace moetron {

// A moe_experts call of at most this many tokens runs per-expert GEMVs on CUDA cores; more tokens
// run tensor-core tiles (kernels::grouped_gemm_tile_rows; kernels::kGemvMaxRows is this value).
constexpr int64_t kExpertGemvMaxTokens = 8;
inline bool expert_call_is_gemv(int64_t call_tokens) { return call_tokens <= kExpertGemvMaxTokens; }

// Of `slots` routed uniformly over `ids` expert ids, those a set of `set_size` gets (rounded up):
// what an expert call expects when every slot reaches it but only its set's are its work. The
// engine tells moe_experts this (forward.cpp) and the predictor prices it (step_cost.cpp).
inline int64_t expected_set_slots(int64_t slots, int64_t set_size, int64_t ids) {
  return (slots * set_size + ids - 1) / std::max<int64_t>(ids, 1);
}

// The tokens that pick a call's kernels (the GEMV, the row tiles, the GEMMs): the call's own, or
// where the caller expects only `expected_slots` of its slots to be real (a decode dispatch's
// fixed-capacity buffers, Ops::moe_experts), as many tokens as hold those. Never below the GEMV
// cutoff when the call is above it: the GEMV path assumes no expert gets more rows than there are
// tokens, which padding rows do not promise. Used by CudaOps and by the predictor alike.
inline int64_t expert_call_planned_tokens(int64_t call_tokens, int64_t expected_slots, int64_t slots_per_token) {
  if (expected_slots < 0) return call_tokens;
  const int64_t k = std::max<int64_t>(slots_per_token, 1);
  const int64_t expected_tokens = (expected_slots + k - 1) / k;
  return std::min(call_tokens, std::max(expected_tokens, std::min(call_tokens, kExpertGemvMaxTokens + 1)));
}

// Which kernels run decode-sized expert loads (up to a few dozen rows an expert):
// kernels::grouped_gemm_tile_rows and CudaOps (MOETRON_DECODE_EXPERTS).
//   kMma        tensor-core GEMVs (weights as the MMA's row operand) on row tiles of 8, 32 and
//               96 rows (64 where the 96-row tiles' blocks would not fill the SMs), then
//               128-row WMMA tiles (`mma`, the default);
//   kCudaCores  CUDA-core GEMVs on tiles of up to 8 rows, then 16-row WMMA tiles (`cuda-cores`,
//               for A/B measurements).
enum class DecodeExpertKernel { kMma, kCudaCores };

// Prefill-sized calls run one cuBLASLt GEMM per expert on its exact rows instead of the tiles,
// several experts at once on side streams (CudaOps::do_moe_experts, MOETRON_EXPERT_GEMM=cublas,
// the default), where the stream is not being captured (the call syncs with the host) and the
// GEMMs beat the tiles. The path costs the host about 20-30 us a local expert whatever its size
// (its calls, layouts and events: 60-64 experts of any width took 1.2-1.9 ms at 256 rows each in
// the H200 profiles of the fifteenth session, `perf/predictor_h200_fifteenth/`), while the
// tiles run wide calls at about 140 TFLOP/s there (19% of the bf16 GEMM rate). So the GEMMs win
// where an expert's work is large beside that host cost, or where there are few experts to pay
// it (whose tiles also leave SMs idle). Today's rule (ExpertGemmRule::kHostCost), fitted to every
// stored point (the tiles read at 128 rows and scaled by the rows, against the GEMMs measured):
//   - from 128 rows an expert on average, experts whose gate/up and down GEMMs reach
//     kExpertGemmMinFlops (Mixtral's: 45 GFLOP at 128 rows, 2.8 ms on the tiles against 1.2 ms for
//     the GEMMs at 256 rows);
//   - from 256 rows, experts of at least kExpertGemmHostBoundFlops (OLMoE's 3.2 GFLOP there:
//     1.86 ms on the GEMMs against ~1.5 extrapolated for the tiles, a tie that the engine's own
//     2,048-token steps, faster than the profile's GEMM point, leave on the GEMMs; Qwen1.5's 4.4
//     GFLOP: 1.19 ms against ~1.8) or calls of at most kExpertGemmFewExperts local experts
//     (Mixtral's tp slices: 0.30 ms on the GEMMs at 256 rows against ~0.46 on the tiles).
//   Not the 60-64 narrow expert slices of tp plans, where the GEMMs' host cost is all there is:
//   OLMoE's 64-512 columns 1.8-1.9 ms at 256-512 rows against ~0.3-0.8 ms on the tiles, Qwen1.5's
//   88-704 columns 1.2-1.6 ms at 256 rows against ~0.3-1.1.
// Profiles were measured under earlier rules (their format says which: profile.hpp), and the
// cost model files their points by the rule they ran under.
// The call's rows are then always copied into expert order (kernels::moe_permute),
// also where one routing block could have resolved them in place (at most
// kExpertRouteOneBlockMaxSlots slots and kExpertRouteOneBlockMaxExperts experts: Mixtral's
// 4,096-token steps, whose tiles ran at a quarter of the GEMMs' rate).
constexpr int64_t kExpertLargeTileRows = 128;
constexpr double kExpertGemmMinFlops = 5e9;        // an expert's gate/up and down GEMMs at its mean rows
constexpr double kExpertGemmHostBoundFlops = 3e9;  // the same, from 2 x kExpertLargeTileRows rows
constexpr int64_t kExpertGemmFewExperts = 16;
constexpr int64_t kExpertRouteOneBlockMaxSlots = 8192;
constexpr int64_t kExpertRouteOneBlockMaxExperts = 1024;
// The rows an expert of the call gets on average; -1 where no GEMM path applies (no local
// experts, or a GEMV-sized call).
inline int64_t expert_call_mean_rows(int64_t call_tokens, int64_t slots_per_token, int64_t local_experts) {
  if (local_experts <= 0 || expert_call_is_gemv(call_tokens)) return -1;
  return call_tokens * slots_per_token / local_experts;
}
// One expert's gate/up and down GEMMs at `mean_rows` rows: 2 x 3 x rows x hidden x cols.
inline double expert_call_flops(int64_t mean_rows, int64_t hidden, int64_t cols) {
  return 6.0 * static_cast<double>(mean_rows) * static_cast<double>(hidden) * static_cast<double>(cols);
}
// Under the default on Hopper (PrefillExpertPath::kHopperCublas), the eager calls whose experts are large enough
// that the per-expert cuBLAS GEMMs beat the grouped wgmma kernel still take them: from
// kExpertLargeTileRows rows an expert and kExpertHopperCublasMinFlops an expert (gate/up and down
// at its mean rows). expert_gemm_bench on an H200 (twenty-third session; wgmma against cuBLAS on
// 8 streams): Mixtral 512 rows an expert (180 GFLOP) 3.23 against 2.30 ms, 1,024 rows 5.81 against
// 4.35; OLMoE 1,024 rows (12.9 GFLOP) 2.12 against 1.87; at 128 rows Mixtral ties (1.06 / 1.06).
// Below it wgmma wins: OLMoE 512 rows (6.4 GFLOP) 1.17 against 1.47, 256 rows 0.62 against 1.42;
// Qwen1.5 273 rows (4.4 GFLOP) 0.90 against 1.11, 546 rows (9.4) 1.55 against 1.50 (a tie);
// Qwen3-30B-A3B 512 rows (4.8) 1.89 against 2.65.
constexpr double kExpertHopperCublasMinFlops = 10e9;
inline bool expert_call_by_hopper_cublas(int64_t call_tokens, int64_t slots_per_token, int64_t local_experts,
                                         int64_t hidden, int64_t cols, bool eager) {
  const int64_t mean_rows = expert_call_mean_rows(call_tokens, slots_per_token, local_experts);
  const double expert_flops = expert_call_flops(mean_rows, hidden, cols);
  return eager && mean_rows >= kExpertLargeTileRows && expert_flops >= kExpertHopperCublasMinFlops;
}

// Which calls take the per-expert cuBLAS GEMMs, by the rule the engine ran (each profile's
// points are filed by the rule it was measured under: bench/profile.hpp):
//   kFrom256Rows      formats 1-3: from 2 x 128 rows an expert, any size;
//   kLargeFrom128Rows format 4: also from 128 rows for experts of kExpertGemmMinFlops;
//   kHostCost         format 5 and MOETRON_EXPERT_GEMM=cublas (above);
//   kHopperCublas     the default on sm_90a (wgmma+cublas): expert_call_by_hopper_cublas;
//   kNone             MOETRON_EXPERT_GEMM=wgmma or tiles: never (the grouped kernels run every call).
enum class ExpertGemmRule { kFrom256Rows, kLargeFrom128Rows, kHostCost, kHopperCublas, kNone };
// The rule of a MOETRON_EXPERT_GEMM path by its name (as kernel settings record it): the
// Hopper default's `wgmma+cublas`, the grouped kernels alone (`wgmma`, `tiles`: none); `cublas`
// or any other name, `cublas_rule` (today's kHostCost; a profile's format says which it ran).
inline ExpertGemmRule expert_gemm_rule_of_path_name(const std::string& name, ExpertGemmRule cublas_rule) {
  if (name == "wgmma+cublas") return ExpertGemmRule::kHopperCublas;
  if (name == "wgmma" || name == "tiles") return ExpertGemmRule::kNone;
  return cublas_rule;
}
// hidden: the model's; cols: an expert's intermediate columns on this rank; eager: the stream is
// not being captured.
inline bool expert_call_by_gemms(int64_t call_tokens, int64_t slots_per_token, int64_t local_experts, int64_t hidden,
                                 int64_t cols, bool eager, ExpertGemmRule rule = ExpertGemmRule::kHostCost) {
  if (!eager || rule == ExpertGemmRule::kNone) return false;
  if (rule == ExpertGemmRule::kHopperCublas)
    return expert_call_by_hopper_cublas(call_tokens, slots_per_token, local_experts, hidden, cols, eager);
  const int64_t mean_rows = expert_call_mean_rows(call_tokens, slots_per_token, local_experts);
  const bool from_256 = mean_rows >= 2 * kExpertLargeTileRows;
  if (rule == ExpertGemmRule::kFrom256Rows) return from_256;
  const double expert_flops = expert_call_flops(mean_rows, hidden, cols);
  const bool large_from_128 = mean_rows >= kExpertLargeTileRows && expert_flops >= kExpertGemmMinFlops;
  if (rule == ExpertGemmRule::kLargeFrom128Rows) return from_256 || large_from_128;
  return large_from_128 ||
         (from_256 && (expert_flops >= kExpertGemmHostBoundFlops || local_experts <= kExpertGemmFewExperts));
}

// Under MOETRON_EXPERT_GEMM=wgmma, the Hopper grouped GEMM (kernels/grouped_gemm_sm90.cu, tiles of
// kExpertLargeTileRows rows) runs from this many rows an expert on average, which covers every
// call the GEMMs would take (they start at kExpertLargeTileRows rows) (decode batches where the 32-row tensor-core GEMVs stop and the 96-row wide tiles
// start: kernels::kMmaTileMaxMeanRows): one tile an expert up to 128 rows streams each expert's
// weights once through TMA, where the wide tiles read them at 1.31-1.89 TB/s (Mixtral, 256
// sequences, ncu on an H200, perf/NOTES.md nineteenth session). Measured (expert_gemm_bench, H200,
// twenty-third session): Mixtral's call at 256 sequences (64 rows an expert) 0.84 ms against
// 1.28 on the wide tiles, at 160 sequences 0.80 against 0.95; OLMoE's at 100-256 tokens within 5%.
constexpr int64_t kExpertHopperMinMeanRows = 25;
static_assert(kExpertHopperMinMeanRows <= kExpertLargeTileRows, "the Hopper path covers the GEMMs' calls");
inline bool expert_call_by_hopper_gemms(int64_t call_tokens, int64_t slots_per_token, int64_t local_experts) {
  return expert_call_mean_rows(call_tokens, slots_per_token, local_experts) >= kExpertHopperMinMeanRows;
}

// Streams the GEMM path spreads one call's experts over: enough that the experts' GEMMs in
// flight hold about four 128 x 128 output tiles per SM, at most `max_streams`. One expert's
// gate/up GEMM of `mean_rows` rows and `gate_up_cols` columns is ceil(rows / 128) x ceil(cols /
// 128) tiles. On an H200 (perf/expert_gemm_bench, two runs, eighth session) 8 streams beat 1 by
// 6-17% in both runs for OLMoE at 4-8k tokens a step and Qwen1.5 at 8k, made no clear difference
// at 16k (run-to-run noise is about 10%), and lost 7-22% in both runs for Qwen3-30B-A3B's narrow
// experts at 4-8k, which this rule still gives 8 streams: a rule that fits them is not known yet.
inline int expert_gemm_streams_for(double mean_rows, int64_t gate_up_cols, int sms, int max_streams) {
  const double tiles = std::ceil(std::max(mean_rows, 1.0) / 128) * std::ceil(static_cast<double>(gate_up_cols) / 128);
  const double wanted = std::ceil(4.0 * sms / tiles);
  return static_cast<int>(std::clamp(wanted, 1.0, static_cast<double>(std::max(1, max_streams))));
}

// The GEMM path's split of the experts over its streams: expert e owns rows [offsets[e],
// offsets[e + 1]) (offsets.size() = experts + 1); returns the edges b_0 = 0 < b_1 < ... = experts
// of at most `streams` contiguous blocks of about equal rows (block i: experts [b_i, b_i+1)).
// Contiguous, so that each block's rows are one range (one SwiGLU launch a block); an expert is
// never split, so a block may exceed the mean by up to one expert's rows.
inline std::vector<int64_t> split_experts_by_rows(const std::vector<int32_t>& offsets, int streams) {
  const int64_t experts = static_cast<int64_t>(offsets.size()) - 1;
  std::vector<int64_t> edges{0};
  if (experts <= 0) return edges;
  const int64_t first = offsets.front(), rows = offsets.back() - first;
  for (int b = 1; b < streams && edges.back() < experts; ++b) {
    // The first expert edge at or past b / streams of the rows, beyond the last edge.
    const int64_t target = first + rows * b / streams;
    const auto at = std::lower_bound(offsets.begin() + edges.back() + 1, offsets.end(), target);
    const int64_t edge = std::min<int64_t>(experts, at - offsets.begin());
    if (edge < experts) edges.push_back(edge);
  }
  edges.push_back(experts);
  return edges;
}

// The CUDA expert kernels load 8 bf16 at a time: hidden and a rank's expert columns must be
// multiples of this (CudaOps::do_moe_experts refuses others at run time).
constexpr int64_t kCudaExpertWidthMultiple = 8;

}  // namespace moetron
