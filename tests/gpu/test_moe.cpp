// The MoE path of CudaOps against the CPU reference, as a table (op_table.hpp): router top-k
// and the grouped expert computation (device-side permutation, grouped GEMMs, weighted
// combine), with uneven expert loads, experts that get no token, expert-parallel slices of the
// expert range, and the device-side expert counts and dispatch packing.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "gpu_test_util.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaMoe = GpuVsCpu;

std::vector<float> host_of(CaseInputs& in, const Tensor& t) { return read_as_float(in.ops, t); }

TEST_F(CudaMoe, RouterTopkMatchesReference) {
  std::vector<OpCase> cases;
  for (int64_t experts : {8, 60, 64, 128, 256}) {
    for (int64_t k : {1, 2, 4, 8}) {
      if (k > experts) continue;
      for (bool renorm : {false, true}) {
        for (int64_t tokens : {1, 3, 17, 129}) {
          // A recorded step's bucket: the rows past valid_tokens are padding (no expert).
          const int32_t valid = tokens == 129 ? 100 : tokens == 17 ? 0 : -1;  // -1: not given
          const std::string name = "router_topk E=" + std::to_string(experts) +
                                   " k=" + std::to_string(k) + " T=" + std::to_string(tokens) +
                                   (renorm ? " renorm" : "") + (valid >= 0 ? " valid=" + std::to_string(valid) : "");
          cases.push_back({name, [=](CaseInputs& in) {
            // Distinct logits (multiples of 1/16, exact in bf16), so the top-k is unambiguous.
            std::vector<float> logits(static_cast<size_t>(tokens * experts));
            std::vector<int32_t> order(static_cast<size_t>(experts));
            for (int64_t t = 0; t < tokens; ++t) {
              std::iota(order.begin(), order.end(), 0);
              std::shuffle(order.begin(), order.end(), in.rng);
              for (int64_t e = 0; e < experts; ++e)
                logits[t * experts + e] = (order[e] - experts / 2) / 16.0f;
            }
            Tensor l = in.activation(logits, {tokens, experts});
            Tensor ids = in.output(DType::I32, {tokens, k});
            Tensor w = in.output(DType::F32, {tokens, k});
            // Padding rows' weights must be written 0 (outputs start as NaN; their ids as -1).
            const Tensor count = valid >= 0 ? in.i32({valid}, {1}) : Tensor{};
            in.ops.router_topk(l, k, renorm, ids, w, count);
            // Ids: exact (no ties). Weights: an fp32 softmax of the same inputs, only the
            // order of the exp sums differs.
            return CaseOutputs{{"ids", host_of(in, ids), 0.0}, {"weights", host_of(in, w), 1e-5}};
          }});
        }
      }
    }
  }
  run_cases(cases);
}

struct MoeShape {
  int64_t tokens, experts, k, hidden, inter, first_local, num_local;
};

std::string describe(const MoeShape& c) {
  return "moe_experts T=" + std::to_string(c.tokens) + " E=" + std::to_string(c.experts) +
         " k=" + std::to_string(c.k) + " H=" + std::to_string(c.hidden) +
         " I=" + std::to_string(c.inter) + " local=[" + std::to_string(c.first_local) + ", +" +
         std::to_string(c.num_local) + ")";
}

// Runs moe_experts on the given routing with random activations and expert weights.
CaseOutputs run_experts(CaseInputs& in, const MoeShape& c, const std::vector<int32_t>& ids,
                        const std::vector<float>& weights, int64_t expected_slots = -1) {
  Tensor x = in.activation({c.tokens, c.hidden});
  Tensor id = in.i32(ids, {c.tokens, c.k});
  Tensor w = in.f32(weights, {c.tokens, c.k});
  Tensor gate_up = in.weight({c.num_local, 2 * c.inter, c.hidden}, 1.0f / std::sqrt(float(c.hidden)));
  Tensor down = in.weight({c.num_local, c.hidden, c.inter}, 1.0f / std::sqrt(float(c.inter)));
  Tensor out = in.output_activation({c.tokens, c.hidden});
  in.ops.moe_experts(x, id, w, ExpertWeights{c.first_local, c.num_local, gate_up, down}, out, expected_slots);
  // Two grouped GEMMs with a bf16 intermediate and a bf16 weighted combine: a few bf16
  // roundings, within kBf16Tolerance.
  return {{"out", host_of(in, out), kBf16Tolerance}};
}

// One case a shape: skewed routing (low experts popular, the top quarter gets nothing), random
// combine weights.
std::vector<OpCase> skewed_routing_cases(const std::vector<MoeShape>& shapes) {
  std::vector<OpCase> cases;
  for (const MoeShape& c : shapes) {
    cases.push_back({describe(c), [c](CaseInputs& in) {
      std::vector<int32_t> ids;
      std::vector<float> weights;
      std::exponential_distribution<double> skew(4.0 / c.experts);
      std::uniform_real_distribution<float> wdist(0.05f, 1.0f);
      const int64_t reachable = std::max<int64_t>(c.k, c.experts * 3 / 4);
      for (int64_t t = 0; t < c.tokens; ++t) {
        std::vector<int32_t> chosen;
        while (static_cast<int64_t>(chosen.size()) < c.k) {
          const int32_t e = static_cast<int32_t>(std::min<double>(skew(in.rng), reachable - 1));
          if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
        }
        for (int32_t e : chosen) {
          ids.push_back(e);
          weights.push_back(wdist(in.rng));
        }
      }
      return run_experts(in, c, ids, weights);
    }});
  }
  return cases;
}

TEST_F(CudaMoe, GroupedExpertsMatchReference) {
  const std::vector<MoeShape> shapes = {
      {1, 8, 2, 64, 32, 0, 8},       {3, 8, 1, 96, 40, 0, 8},
      {17, 64, 8, 64, 32, 0, 64},    {129, 16, 4, 256, 96, 0, 16},
      {129, 64, 8, 2048, 64, 16, 16},  // expert parallel: a slice of the experts
      {200, 60, 4, 128, 64, 0, 60},  {64, 32, 2, 512, 512, 16, 8},
      // Many rows per expert: the large-tile GEMMs.
      {1100, 8, 2, 128, 96, 0, 8},   {1500, 16, 4, 96, 64, 4, 8},
      // Decode: GEMV tiles of 1, 2, 4 and 8 rows (OLMoE-like routing, widths under one warp
      // load, over one and not a multiple of it), then 16-row tensor-core tiles.
      {1, 64, 8, 2048, 1024, 0, 64}, {2, 64, 8, 96, 40, 0, 64},
      {3, 64, 8, 264, 136, 0, 64},   {8, 60, 4, 512, 72, 0, 60},
      {5, 64, 8, 1032, 264, 8, 16},  {17, 64, 8, 256, 128, 0, 64},
      {64, 64, 8, 2048, 256, 0, 64},
      // Decode batches of 9 to 256 tokens: tensor-core GEMVs on 32-row tiles (skewed routing
      // gives the popular experts several), with widths that end in a partial 32-wide k chunk
      // (264, 1032) and a partial block of output columns (136, 88, 72, 264, 520).
      {48, 64, 8, 264, 136, 0, 64},  {100, 60, 4, 1032, 88, 0, 60},
      {256, 64, 8, 520, 72, 0, 64},  {33, 64, 8, 264, 136, 8, 16},
      // A Mixtral-like routing at 32 rows an expert on average (popular experts take several
      // 32-row tiles), 40, 64 and 96 rows an expert, and 175 rows an expert (several tiles),
      // with partial blocks of output columns and a partial k chunk. Under the default these
      // narrow experts take 64-row tensor-core GEMV tiles (the wide tiles would leave SMs
      // idle: kernels::wide_tiles_fill), on CUDA cores 64-row WMMA tiles.
      {128, 8, 2, 1032, 264, 0, 8},  {160, 8, 2, 264, 136, 0, 8},  {256, 8, 2, 4096, 520, 0, 8},
      {384, 8, 2, 1032, 200, 0, 8},  {700, 16, 4, 264, 136, 0, 16},
      // Experts wide and many enough for the 96-row wide tiles on GPUs of up to 288 SMs (64 and
      // 80 rows an expert on average, the popular ones several tiles; an expert-parallel slice;
      // gate/up columns and down k that end in partial blocks and chunks).
      {512, 32, 4, 2048, 520, 0, 32}, {320, 64, 8, 2056, 520, 16, 32},
      // One token: the down projections and the weighted sum in one kernel (gemv_down_combine):
      // an expert-parallel slice (slots of other ranks' experts skipped), more slots than the
      // kernel's warps, a Mixtral-like width.
      {1, 64, 8, 1032, 264, 8, 16},  {1, 16, 10, 128, 64, 0, 16},
      {1, 8, 2, 4096, 1408, 0, 8},
      // More slots than one routing block takes (8192): counted and scanned by separate
      // kernels, the rows copied into expert order before the gate/up GEMM.
      {2100, 16, 4, 64, 32, 0, 16},
      // Prefill-sized loads (hundreds of rows per expert): one cuBLAS GEMM per expert outside
      // graph capture where they beat the tiles (expert_call_by_gemms: few local experts here),
      // with Qwen1.5-like awkward widths (a tp slice of 88 columns, experts that get nothing) on
      // expert-parallel slices of 12 of 60 and 16 of 64 experts; all 60 of those narrow experts
      // at 273 rows each stay on the tiles (past the tiles' 255 rows of the older rule).
      {4100, 60, 4, 136, 88, 12, 12}, {3000, 64, 8, 264, 72, 16, 16}, {4100, 60, 4, 136, 88, 0, 60},
      // Large experts take those GEMMs from 128 rows an expert (expert_call_by_gemms: 6 x 128 x
      // 4096 x 1608 = 5.06 GFLOP an expert): one expert of eight held, 128 slots planned for it.
      {128, 8, 1, 4096, 1608, 3, 1},
  };
  // The decode-sized calls on both kernel families (the tensor-core GEMVs, the default, and the
  // CUDA-core GEMVs with 16-row WMMA tiles), against one reference.
  const DecodeExpertKernel initial = gpu().decode_expert_kernel();
  auto choose = [](DecodeExpertKernel kernel) { return [kernel](CudaOps& o) { o.set_decode_expert_kernel(kernel); }; };
  run_cases(skewed_routing_cases(shapes),
            {{"decode experts on tensor-core GEMVs", choose(DecodeExpertKernel::kMma)},
             {"decode experts on CUDA cores and WMMA tiles", choose(DecodeExpertKernel::kCudaCores)}});
  gpu().set_decode_expert_kernel(initial);
}

// Prefill-sized calls on each prefill path against one reference: the per-expert cuBLAS GEMMs,
// the WMMA tiles, and where the device runs it the Hopper grouped GEMM, alone and as the default
// there (cuBLAS for experts of 10 GFLOP from 128 rows: the last case)
// (kernels/grouped_gemm_sm90.cu: TMA boxes of 128 rows x 64 k, 64 SwiGLU or 128 down columns a
// block). Rows an expert that end in partial 128-row tiles and experts that get nothing (skewed
// routing), k that ends in a partial 64-wide step (96, 136, 264, 1032), output columns that end
// in a partial block (96, 88, 72, 520, 1608), expert-parallel slices, and one Mixtral-sized
// expert at 128 rows: large enough for expert_call_by_gemms. Then decode-sized calls the Hopper
// path takes too (25-255 rows an expert on average: expert_call_by_hopper_gemms), which the
// other variants run on the decode kernels: Mixtral-like at 64 and 40 rows, OLMoE-like at 32,
// an expert-parallel slice holding one expert.
TEST_F(CudaMoe, ExpertGemmPathsMatchReference) {
  const std::vector<MoeShape> shapes = {
      {1100, 8, 2, 128, 96, 0, 8},       {1500, 16, 4, 96, 64, 4, 8},   {4100, 60, 4, 136, 88, 12, 12},
      {3000, 64, 8, 264, 72, 16, 16},    {1100, 8, 2, 1032, 520, 0, 8}, {128, 8, 1, 4096, 1608, 3, 1},
      {700, 4, 2, 2048, 256, 0, 4},
      {256, 8, 2, 4096, 520, 0, 8},      {160, 8, 2, 264, 136, 0, 8},   {256, 64, 8, 520, 72, 0, 64},
      {200, 8, 2, 1032, 264, 5, 1},
      {128, 8, 1, 4096, 3336, 2, 1},  // 10.5 GFLOP at 128 rows: the Hopper default's cuBLAS call
  };
  const PrefillExpertPath initial = gpu().prefill_expert_path();
  auto path = [](PrefillExpertPath p) { return [p](CudaOps& o) { o.set_prefill_expert_path(p); }; };
  std::vector<GpuVariant> variants = {{"per-expert cuBLAS GEMMs", path(PrefillExpertPath::kCublas)},
                                      {"WMMA tiles", path(PrefillExpertPath::kTiles)}};
  if (kernels::grouped_gemm_sm90_available()) {
    variants.push_back({"Hopper grouped GEMM (wgmma + TMA)", path(PrefillExpertPath::kHopper)});
    variants.push_back({"Hopper default (wgmma, cuBLAS for large experts)", path(PrefillExpertPath::kHopperCublas)});
  }
  else
    std::printf("[ NOTE ] the Hopper grouped GEMM is not tested: this device cannot run the sm_90a image\n");
  run_cases(skewed_routing_cases(shapes), variants);
  gpu().set_prefill_expert_path(initial);
}

// The wide tiles' down projection with its K split 1 to 4 ways and as picked
// (kernels::DownSplit): the split blocks' float32 sums added by the last to arrive, the counters
// reused launch after launch (a count left behind would leave a later tile unwritten).
TEST_F(CudaMoe, SplitDownProjectionMatchesReference) {
  const std::vector<MoeShape> shapes = {
      // Wide enough for the wide tiles on GPUs of up to 288 SMs (as above); inter = 520 is 9 k
      // steps of 64 (the last 8 wide), so 4 splits asked give 3 of 3 steps.
      {512, 32, 4, 2048, 520, 0, 32}, {320, 64, 8, 2056, 520, 16, 32},
      // A down projection that alone would not fill an H200 twice (136 blocks for 132 SMs): split
      // 4 ways as picked there (kernels::wide_down_splits); 1032 = 16 x 64 + 8.
      {160, 8, 2, 2176, 1032, 0, 8},
  };
  const DecodeExpertKernel initial = gpu().decode_expert_kernel();
  const int initial_splits = gpu().down_splits();
  auto split = [](int splits) {
    return [splits](CudaOps& o) {
      o.set_decode_expert_kernel(DecodeExpertKernel::kMma);
      o.set_down_splits(splits);
    };
  };
  run_cases(skewed_routing_cases(shapes), {{"unsplit", split(1)},
                                           {"split 2 ways", split(2)},
                                           {"split 3 ways", split(3)},
                                           {"split 4 ways", split(4)},
                                           {"splits as picked", split(0)}});
  gpu().set_decode_expert_kernel(initial);
  gpu().set_down_splits(initial_splits);
}

// A decode dispatch's received buffer: every peer's fixed capacity, mostly padding (expert -1),
// one slot a row, and the call told how many slots to expect (the kernels are picked by those:
// 32 rows over 4 experts take the 32-row GEMV tiles, not the 64-row tiles the 256 rows would).
// The real rows may exceed the expectation and pile onto a few experts (an emulated rank's copies
// of its own block): more tiles an expert, the same result as the reference. Likewise one
// replica's slots on a rank that holds one expert of eight.
TEST_F(CudaMoe, DispatchBuffersPickKernelsByTheExpectedRows) {
  std::vector<OpCase> cases;
  const MoeShape c{256, 64, 1, 2048, 264, 12, 4};  // OLMoE-like hidden, a 16-rank expert set
  for (const int64_t real : {32, 128, 256}) {
    for (const int64_t expected : {int64_t{3}, int64_t{32}, int64_t{-1}}) {
      cases.push_back({describe(c) + " " + std::to_string(real) + " real rows, expected " + std::to_string(expected),
                       [c, real, expected](CaseInputs& in) {
        std::vector<int32_t> ids(static_cast<size_t>(c.tokens), -1);
        std::uniform_int_distribution<int64_t> row(0, c.tokens - 1);
        // Spread over the 4 local experts at 32 rows; on 2 of them (and a few elsewhere) above.
        const int64_t experts_hit = real <= 32 ? c.num_local : 2;
        for (int64_t placed = 0; placed < real;) {
          const size_t r = static_cast<size_t>(row(in.rng));
          if (ids[r] >= 0) continue;
          ids[r] = static_cast<int32_t>(placed % 7 == 6 ? (placed % 12) : c.first_local + placed % experts_hit);
          ++placed;
        }
        return run_experts(in, c, ids, std::vector<float>(static_cast<size_t>(c.tokens), 1.0f), expected);
      }});
    }
  }
  // One replica's step on an expert-parallel rank (dp = 1, ep = 8, Mixtral-like top-2): every
  // token's slots arrive, an eighth of them for the rank's one expert, which is what it expects.
  for (const int64_t tokens : {int64_t{9}, int64_t{64}, int64_t{300}}) {
    const MoeShape e{tokens, 8, 2, 1032, 264, 5, 1};
    cases.push_back({describe(e) + " expecting an eighth of the slots", [e](CaseInputs& in) {
      std::vector<int32_t> ids;
      std::uniform_int_distribution<int32_t> expert(0, 7);
      for (int64_t t = 0; t < e.tokens; ++t) {
        const int32_t a = expert(in.rng);
        int32_t b = expert(in.rng);
        while (b == a) b = expert(in.rng);
        ids.insert(ids.end(), {a, b});
      }
      return run_experts(in, e, ids, in.values(e.tokens * e.k), (e.tokens * e.k + 7) / 8);
    }});
  }
  run_cases(cases);
}

// Ids need not be distinct within a token (a caller may repeat an expert): an expert then gets
// more rows than there are tokens, more than one GEMV tile.
TEST_F(CudaMoe, RepeatedExpertsOverflowOneTile) {
  std::vector<OpCase> cases;
  // 600 tokens: the prefill-sized path, where expert 2 gets four times as many rows as tokens.
  for (int64_t tokens : {1, 3, 8, 600}) {
    const MoeShape c{tokens, 4, 4, 256, 64, 0, 4};
    cases.push_back({describe(c) + " every slot expert 2", [c](CaseInputs& in) {
      std::vector<int32_t> ids(static_cast<size_t>(c.tokens * c.k), 2);
      ids[0] = 0;
      return run_experts(in, c, ids, in.values(c.tokens * c.k));
    }});
  }
  run_cases(cases);
}

TEST_F(CudaMoe, NoLocalExpertsGiveZeros) {
  run_cases({{"moe_experts with no local experts", [](CaseInputs& in) {
    Tensor x = in.activation({5, 64});
    Tensor id = in.i32(in.ints(10, 0, 7), {5, 2});
    Tensor w = in.f32(in.values(10), {5, 2});
    Tensor out = in.output_activation({5, 64});
    in.ops.moe_experts(x, id, w, ExpertWeights{}, out);
    return CaseOutputs{{"out", host_of(in, out), 0.0}};  // zeros on both: exact
  }}});
}

TEST_F(CudaMoe, ExpertCountsAccumulateOnTheDevice) {
  run_cases({{"accumulate_expert_counts E=60 k=4 over T=1, 17, 129", [](CaseInputs& in) {
    const int64_t experts = 60;
    std::vector<int64_t> start(experts);
    for (int64_t e = 0; e < experts; ++e) start[e] = e * 3;
    Tensor counts = in.i64(start, {experts});
    for (int64_t tokens : {1, 17, 129}) {
      Tensor id = in.i32(in.ints(tokens * 4, 0, experts - 1), {tokens, 4});
      in.ops.accumulate_expert_counts(id, counts);
    }
    return CaseOutputs{{"counts", host_of(in, counts), 0.0}};  // integer counts: exact
  }}});
}

// moe_experts given `served`: the count rides in the one-block routing kernel (few slots) or
// takes its own launch (many slots), over every id in [0, E), local or not, padding (-1) left
// out; the CPU reference counts first, then computes. Counts exact, outputs as the plain call.
TEST_F(CudaMoe, ExpertCountsRideTheRouting) {
  std::vector<OpCase> cases;
  struct CountCase {
    int64_t tokens, experts, k, first_local, num_local;
  };
  // One token (the batch-1 path), a slice of 60 experts, no local expert, and 1,100 tokens of 8
  // slots (past the one routing block's 8,192).
  for (const CountCase cc : {CountCase{1, 64, 8, 0, 64}, CountCase{9, 60, 4, 8, 16}, CountCase{3, 60, 4, 0, 0},
                             CountCase{1100, 16, 8, 0, 16}}) {
    const std::string name = "moe_experts counting served T=" + std::to_string(cc.tokens) + " E=" +
                             std::to_string(cc.experts) + " local=[" + std::to_string(cc.first_local) + ", +" +
                             std::to_string(cc.num_local) + ")";
    cases.push_back({name, [cc](CaseInputs& in) {
      const int64_t hidden = 64, inter = 32, slots = cc.tokens * cc.k;
      std::vector<int32_t> ids;
      for (int64_t t = 0; t < cc.tokens; ++t) {  // k distinct experts a token, as the router gives
        const std::vector<int32_t> pick = in.ints(cc.k, 0, static_cast<int32_t>(cc.experts - 1));
        for (int64_t j = 0; j < cc.k; ++j)
          ids.push_back(static_cast<int32_t>((pick[0] + j * 7) % cc.experts));
      }
      ids[static_cast<size_t>(slots - 1)] = -1;  // a dispatch's padding: not counted
      std::vector<int64_t> start(static_cast<size_t>(cc.experts));
      for (int64_t e = 0; e < cc.experts; ++e) start[static_cast<size_t>(e)] = 5 * e;
      Tensor served = in.i64(start, {cc.experts});
      Tensor x = in.activation({cc.tokens, hidden});
      Tensor id = in.i32(ids, {cc.tokens, cc.k});
      Tensor w = in.f32(in.values(slots), {cc.tokens, cc.k});
      ExpertWeights experts;
      if (cc.num_local > 0)
        experts = ExpertWeights{cc.first_local, cc.num_local, in.weight({cc.num_local, 2 * inter, hidden}, 0.125f),
                                in.weight({cc.num_local, hidden, inter}, 0.18f)};
      Tensor out = in.output_activation({cc.tokens, hidden});
      in.ops.moe_experts(x, id, w, experts, out, -1, &served);
      return CaseOutputs{{"served", host_of(in, served), 0.0}, {"out", host_of(in, out), kBf16Tolerance}};
    }});
  }
  run_cases(cases);
}

// Expert counts and co-activation pairs of every layer's routing record in one call:
// distinct top-k ids per token (as the router gives), a dispatch's padding (-1) among them, a
// layer without experts (all -1), records longer than the tokens counted, over steps that add
// to the same counts.
TEST_F(CudaMoe, RoutingStatisticsAccumulateOnTheDevice) {
  std::vector<OpCase> cases;
  for (int64_t experts : {8, 60, 128}) {
    for (int64_t k : {1, 2, 8}) {
      cases.push_back({"accumulate_routing L=3 E=" + std::to_string(experts) + " k=" + std::to_string(k) +
                           " over T=1, 17, 129 of 140 rows",
                       [=](CaseInputs& in) {
        const int64_t layers = 3, rows = 140;
        std::vector<int64_t> start_pairs(static_cast<size_t>(layers * experts * experts));
        for (size_t i = 0; i < start_pairs.size(); ++i) start_pairs[i] = static_cast<int64_t>(i % 5);
        std::vector<int64_t> start_counts(static_cast<size_t>(layers * experts));
        for (size_t i = 0; i < start_counts.size(); ++i) start_counts[i] = static_cast<int64_t>(i % 7);
        Tensor pairs = in.i64(start_pairs, {layers, experts, experts});
        Tensor counts = in.i64(start_counts, {layers, experts});
        std::vector<int32_t> order(static_cast<size_t>(experts));
        for (int64_t tokens : {1, 17, 129}) {
          std::vector<int32_t> ids(static_cast<size_t>(layers * rows * k), -1);
          for (int64_t l = 0; l < layers; ++l) {
            if (l == 1) continue;  // a layer without experts
            for (int64_t t = 0; t < rows; ++t) {
              std::iota(order.begin(), order.end(), 0);
              std::shuffle(order.begin(), order.end(), in.rng);
              std::copy_n(order.begin(), k, ids.begin() + (l * rows + t) * k);
            }
          }
          ids[0] = -1;  // padding is not counted
          Tensor records = in.i32(ids, {layers, rows, k});
          in.ops.accumulate_routing(records, tokens, counts, pairs);
        }
        // Integer counts: exact.
        return CaseOutputs{{"counts", host_of(in, counts), 0.0}, {"pairs", host_of(in, pairs), 0.0}};
      }});
    }
  }
  run_cases(cases);
}

// The router bias of --routing-skew: an F32 add, the same rounding on both backends.
TEST_F(CudaMoe, AddRowBiasMatchesReference) {
  std::vector<OpCase> cases;
  for (int64_t experts : {8, 60, 256}) {
    for (int64_t tokens : {1, 17, 129}) {
      cases.push_back({"add_row_bias E=" + std::to_string(experts) + " T=" + std::to_string(tokens),
                       [=](CaseInputs& in) {
        Tensor logits = in.f32(in.values(tokens * experts, 4.0f), {tokens, experts});
        Tensor bias = in.f32(in.values(experts, 2.0f), {experts});
        in.ops.add_row_bias(logits, bias);
        return CaseOutputs{{"logits", host_of(in, logits), 0.0}};  // one float add each: exact
      }});
    }
  }
  run_cases(cases);
}

// The fixed-capacity expert dispatch (a decode step's all-to-all between replicas): the same
// entries in the same order, padding included, for several expert-set layouts, tp shares of
// the tokens, and batch sizes.
TEST_F(CudaMoe, PackDispatchMatchesHostPacking) {
  struct Layout { int64_t experts, k, sets, shards, tp; };
  std::vector<OpCase> cases;
  for (const Layout& l : {Layout{8, 2, 2, 1, 1}, Layout{64, 8, 8, 1, 1}, Layout{64, 8, 4, 2, 2},
                          Layout{60, 4, 3, 4, 4}, Layout{8, 2, 1, 8, 2}}) {
    for (int64_t tokens : {1, 5, 33, 256}) {
      for (int64_t share = 0; share < l.tp; ++share) {
        const int64_t first = tokens * share / l.tp, last = tokens * (share + 1) / l.tp;
        const std::string name = "pack_dispatch " + std::to_string(l.experts) + " experts in " +
                                 std::to_string(l.sets) + " sets x " + std::to_string(l.shards) +
                                 " shards, tokens [" + std::to_string(first) + ", " +
                                 std::to_string(last) + ") of " + std::to_string(tokens);
        cases.push_back({name, [=](CaseInputs& in) {
          const int64_t set_size = l.experts / l.sets, destinations = l.sets * l.shards;
          // Distinct experts per token, as top-k gives.
          std::vector<int32_t> ids(static_cast<size_t>(tokens * l.k)),
              order(static_cast<size_t>(l.experts));
          for (int64_t t = 0; t < tokens; ++t) {
            std::iota(order.begin(), order.end(), 0);
            std::shuffle(order.begin(), order.end(), in.rng);
            std::copy_n(order.begin(), l.k, ids.begin() + t * l.k);
          }
          Tensor id = in.i32(ids, {tokens, l.k});
          Tensor w = in.f32(in.values(tokens * l.k), {tokens, l.k});
          const int64_t capacity = (tokens + l.tp - 1) / l.tp * std::min(l.k, set_size);
          const int64_t entries = destinations * capacity;
          // Outputs start as values no entry holds, so an entry the kernel skips shows up.
          Tensor rows = in.i32(std::vector<int32_t>(entries, 7777), {entries});
          Tensor experts = in.i32(std::vector<int32_t>(entries, 7777), {entries, 1});
          Tensor scales = in.f32(std::vector<float>(entries, 7777.0f), {entries});
          in.ops.pack_dispatch(id, w, first, last, set_size, l.shards, capacity, rows, experts,
                               scales);
          // Copies of ids and weights: exact.
          return CaseOutputs{{"rows", host_of(in, rows), 0.0},
                             {"experts", host_of(in, experts), 0.0},
                             {"scales", host_of(in, scales), 0.0}};
        }});
      }
    }
  }
  run_cases(cases);
}

// Redundant experts: every slot to copy t % n of its expert, from a random copy table (1 to 4
// copies per expert, slot ids anywhere), padding ids (-1) included. Integer copies: exact.
TEST_F(CudaMoe, RouteToReplicasMatchesHostRule) {
  std::vector<OpCase> cases;
  for (int64_t experts : {8, 64}) {
    for (int64_t tokens : {1, 7, 300}) {
      cases.push_back({"route_to_replicas E=" + std::to_string(experts) + " T=" + std::to_string(tokens),
                       [=](CaseInputs& in) {
        const int64_t k = 4, cols = 5;
        std::uniform_int_distribution<int32_t> expert(-1, static_cast<int32_t>(experts - 1)), copies(1, 4),
            slot(0, 1000);
        std::vector<int32_t> ids(static_cast<size_t>(tokens * k)), table(static_cast<size_t>(experts * cols), -1);
        for (int32_t& e : ids) e = expert(in.rng);
        for (int64_t e = 0; e < experts; ++e) {
          const int32_t n = copies(in.rng);
          table[static_cast<size_t>(e * cols)] = n;
          for (int32_t c = 0; c < n; ++c) table[static_cast<size_t>(e * cols + 1 + c)] = slot(in.rng);
        }
        Tensor id = in.i32(ids, {tokens, k});
        Tensor t = in.i32(table, {experts, cols});
        Tensor out = in.i32(std::vector<int32_t>(ids.size(), 7777), {tokens, k});
        in.ops.route_to_replicas(id, t, out);
        return CaseOutputs{{"out", host_of(in, out), 0.0}};
      }});
    }
  }
  run_cases(cases);
}

// Rank emulation's packing of every peer's block for one destination (the kernel routes each slot
// to its copy on the fly): random copy tables (1 to 4 copies, slot ids anywhere in the sets),
// several of them shared by peers, tp shares that do not divide the tokens, sharded sets, every
// destination of a layout, a peer count beyond one block's 8 warps. Outputs start as values no
// entry holds. Integer copies: exact.
TEST_F(CudaMoe, PackFromPeersMatchesHostPacking) {
  struct Layout { int64_t experts, k, sets, width, shards, tp, peers, tables; };
  std::vector<OpCase> cases;
  for (const Layout& l : {Layout{8, 2, 2, 5, 1, 1, 4, 2}, Layout{64, 8, 8, 10, 1, 2, 64, 3},
                          Layout{60, 4, 3, 22, 2, 3, 9, 3}, Layout{128, 8, 64, 3, 1, 1, 64, 2}}) {
    for (int64_t tokens : {1, 7, 130}) {
      const std::string name = "pack_from_peers " + std::to_string(l.experts) + " experts, " +
                               std::to_string(l.peers) + " peers, tp " + std::to_string(l.tp) + ", T=" +
                               std::to_string(tokens);
      cases.push_back({name, [=](CaseInputs& in) {
        const int64_t cols = 5, destinations = l.sets * l.shards;
        std::uniform_int_distribution<int32_t> copies(1, 4), slot(0, static_cast<int32_t>(l.sets * l.width - 1)),
            table_of(0, static_cast<int32_t>(l.tables - 1));
        std::vector<int32_t> tables(static_cast<size_t>(l.tables * l.experts * cols), -1), senders;
        for (int64_t row = 0; row < l.tables * l.experts; ++row) {
          const int32_t n = copies(in.rng);
          tables[static_cast<size_t>(row * cols)] = n;
          for (int32_t c = 0; c < n; ++c) tables[static_cast<size_t>(row * cols + 1 + c)] = slot(in.rng);
        }
        for (int64_t p = 0; p < l.peers; ++p) senders.insert(senders.end(), {table_of(in.rng), static_cast<int32_t>(p % l.tp)});
        std::vector<int32_t> ids(static_cast<size_t>(tokens * l.k)), order(static_cast<size_t>(l.experts));
        for (int64_t t = 0; t < tokens; ++t) {  // distinct experts per token, as top-k gives
          std::iota(order.begin(), order.end(), 0);
          std::shuffle(order.begin(), order.end(), in.rng);
          std::copy_n(order.begin(), l.k, ids.begin() + t * l.k);
        }
        Tensor id = in.i32(ids, {tokens, l.k}), table = in.i32(tables, {l.tables, l.experts, cols});
        Tensor sender = in.i32(senders, {l.peers, 2});
        // Random slot ids may repeat within a token: k entries a token fit any destination.
        const int64_t capacity = (tokens + l.tp - 1) / l.tp * l.k, entries = l.peers * capacity;
        CaseOutputs out;
        for (int64_t dest = 0; dest < destinations; dest += std::max<int64_t>(1, destinations / 4)) {
          Tensor rows = in.i32(std::vector<int32_t>(entries, 7777), {entries});
          Tensor experts = in.i32(std::vector<int32_t>(entries, 7777), {entries, 1});
          in.ops.pack_from_peers(id, table, sender, l.tp, l.width, l.shards, dest, capacity, rows, experts);
          out.push_back({"rows to " + std::to_string(dest), host_of(in, rows), 0.0});
          out.push_back({"experts to " + std::to_string(dest), host_of(in, experts), 0.0});
        }
        return out;
      }});
    }
  }
  run_cases(cases);
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
