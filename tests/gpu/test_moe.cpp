// The MoE path of CudaOps against the CPU reference: router top-k and the grouped expert
// computation (device-side permutation, grouped GEMMs, weighted combine), with uneven expert
// loads, experts that get no token, and expert-parallel slices of the expert range.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "gpu_test_util.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaMoe = GpuVsCpu;

TEST_F(CudaMoe, RouterTopkMatchesReference) {
  for (int64_t experts : {8, 60, 64, 128, 256}) {
    for (int64_t k : {1, 2, 4, 8}) {
      if (k > experts) continue;
      for (bool renorm : {false, true}) {
        for (int64_t tokens : {1, 3, 17, 129}) {
          // Distinct logits (multiples of 1/16, exact in bf16), so the top-k is unambiguous.
          std::vector<float> logits(static_cast<size_t>(tokens * experts));
          std::vector<int32_t> order(static_cast<size_t>(experts));
          for (int64_t t = 0; t < tokens; ++t) {
            std::iota(order.begin(), order.end(), 0);
            std::shuffle(order.begin(), order.end(), rng_);
            for (int64_t e = 0; e < experts; ++e)
              logits[t * experts + e] = (order[e] - experts / 2) / 16.0f;
          }
          Pair l = activation(logits, {tokens, experts});
          Pair ids = output(DType::I32, {tokens, k});
          Pair w = output(DType::F32, {tokens, k});
          cpu().router_topk(l.cpu, k, renorm, ids.cpu, w.cpu);
          gpu().router_topk(l.gpu, k, renorm, ids.gpu, w.gpu);
          const std::string name = "E=" + std::to_string(experts) + " k=" + std::to_string(k) +
                                   " T=" + std::to_string(tokens) + (renorm ? " renorm" : "");
          EXPECT_EQ(read_ints(gpu(), ids.gpu), read_ints(cpu(), ids.cpu)) << name;
          expect_close(read(gpu(), w.gpu), read(cpu(), w.cpu), 1e-5, "router weights " + name);
        }
      }
    }
  }
}

struct MoeCase {
  int64_t tokens, experts, k, hidden, inter, first_local, num_local;
};

TEST_F(CudaMoe, GroupedExpertsMatchReference) {
  const std::vector<MoeCase> cases = {
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
  };
  for (const MoeCase& c : cases) {
    const std::string name = "T=" + std::to_string(c.tokens) + " E=" + std::to_string(c.experts) +
                             " k=" + std::to_string(c.k) + " H=" + std::to_string(c.hidden) +
                             " I=" + std::to_string(c.inter) + " local=[" +
                             std::to_string(c.first_local) + ", +" +
                             std::to_string(c.num_local) + ")";
    SCOPED_TRACE(name);
    // Skewed routing: low experts are popular, the top quarter gets nothing.
    std::vector<int32_t> ids;
    std::vector<float> weights;
    std::exponential_distribution<double> skew(4.0 / c.experts);
    std::uniform_real_distribution<float> wdist(0.05f, 1.0f);
    const int64_t reachable = std::max<int64_t>(c.k, c.experts * 3 / 4);
    for (int64_t t = 0; t < c.tokens; ++t) {
      std::vector<int32_t> chosen;
      while (static_cast<int64_t>(chosen.size()) < c.k) {
        const int32_t e = static_cast<int32_t>(std::min<double>(skew(rng_), reachable - 1));
        if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
      }
      for (int32_t e : chosen) {
        ids.push_back(e);
        weights.push_back(wdist(rng_));
      }
    }
    Pair x = random_activation({c.tokens, c.hidden});
    Pair id = ints(ids, {c.tokens, c.k});
    Pair w = floats(weights, {c.tokens, c.k});
    Pair gate_up = random_weight({c.num_local, 2 * c.inter, c.hidden},
                                 1.0f / std::sqrt(float(c.hidden)));
    Pair down = random_weight({c.num_local, c.hidden, c.inter}, 1.0f / std::sqrt(float(c.inter)));
    ExpertWeights ew_cpu{c.first_local, c.num_local, gate_up.cpu, down.cpu};
    ExpertWeights ew_gpu{c.first_local, c.num_local, gate_up.gpu, down.gpu};
    Pair out = output(DType::BF16, {c.tokens, c.hidden});
    cpu().moe_experts(x.cpu, id.cpu, w.cpu, ew_cpu, out.cpu);
    gpu().moe_experts(x.gpu, id.gpu, w.gpu, ew_gpu, out.gpu);
    expect_close(read(gpu(), out.gpu), read(cpu(), out.cpu), kBf16Tolerance, "moe_experts");
    gpu().reset_temps();
    cpu().reset_temps();
  }
}

// Ids need not be distinct within a token (a caller may repeat an expert): an expert then gets
// more rows than there are tokens, more than one GEMV tile.
TEST_F(CudaMoe, RepeatedExpertsOverflowOneTile) {
  const int64_t hidden = 256, inter = 64, local = 4;
  for (int64_t tokens : {1, 3, 8}) {
    SCOPED_TRACE("T=" + std::to_string(tokens));
    const int64_t k = 4;
    std::vector<int32_t> ids(static_cast<size_t>(tokens * k), 2);  // every slot: expert 2
    ids[0] = 0;
    Pair x = random_activation({tokens, hidden});
    Pair id = ints(ids, {tokens, k});
    Pair w = floats(random_values(tokens * k), {tokens, k});
    Pair gate_up = random_weight({local, 2 * inter, hidden}, 1.0f / std::sqrt(float(hidden)));
    Pair down = random_weight({local, hidden, inter}, 1.0f / std::sqrt(float(inter)));
    Pair out = output(DType::BF16, {tokens, hidden});
    cpu().moe_experts(x.cpu, id.cpu, w.cpu, ExpertWeights{0, local, gate_up.cpu, down.cpu},
                      out.cpu);
    gpu().moe_experts(x.gpu, id.gpu, w.gpu, ExpertWeights{0, local, gate_up.gpu, down.gpu},
                      out.gpu);
    expect_close(read(gpu(), out.gpu), read(cpu(), out.cpu), kBf16Tolerance, "moe_experts");
    gpu().reset_temps();
    cpu().reset_temps();
  }
}

TEST_F(CudaMoe, NoLocalExpertsGiveZeros) {
  Pair x = random_activation({5, 64});
  Pair id = ints(random_ints(10, 0, 7), {5, 2});
  Pair w = floats(random_values(10), {5, 2});
  Pair out = output(DType::BF16, {5, 64});
  ExpertWeights none;
  gpu().moe_experts(x.gpu, id.gpu, w.gpu, none, out.gpu);
  for (float v : read(gpu(), out.gpu)) ASSERT_EQ(v, 0.0f);
}

TEST_F(CudaMoe, ExpertCountsAccumulateOnTheDevice) {
  const int64_t experts = 60;
  std::vector<int64_t> start(experts), expect(experts);
  for (int64_t e = 0; e < experts; ++e) start[e] = expect[e] = e * 3;
  Tensor counts = gpu().alloc(DType::I64, {experts});
  gpu().copy_from_host(counts, start.data());
  for (int64_t tokens : {1, 17, 129}) {
    std::vector<int32_t> ids = random_ints(tokens * 4, 0, experts - 1);
    for (int32_t e : ids) ++expect[e];
    Pair id = ints(ids, {tokens, 4});
    gpu().accumulate_expert_counts(id.gpu, counts);
  }
  std::vector<int64_t> got(experts);
  gpu().to_host(counts, got.data());
  EXPECT_EQ(got, expect);
}

// The fixed-capacity expert dispatch (a decode step's all-to-all between replicas) against the
// host packing: the same entries in the same order, padding included, for several expert-set
// layouts, tp shares of the tokens, and batch sizes.
TEST_F(CudaMoe, PackDispatchMatchesHostPacking) {
  struct Layout { int64_t experts, k, sets, shards, tp; };
  for (const Layout& l : {Layout{8, 2, 2, 1, 1}, Layout{64, 8, 8, 1, 1}, Layout{64, 8, 4, 2, 2},
                          Layout{60, 4, 3, 4, 4}, Layout{8, 2, 1, 8, 2}}) {
    const int64_t set_size = l.experts / l.sets, destinations = l.sets * l.shards;
    for (int64_t tokens : {1, 5, 33, 256}) {
      // Distinct experts per token, as top-k gives.
      std::vector<int32_t> ids(static_cast<size_t>(tokens * l.k)), order(static_cast<size_t>(l.experts));
      for (int64_t t = 0; t < tokens; ++t) {
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng_);
        std::copy_n(order.begin(), l.k, ids.begin() + t * l.k);
      }
      Pair id = ints(ids, {tokens, l.k});
      Pair w = floats(random_values(tokens * l.k), {tokens, l.k});
      const int64_t capacity = (tokens + l.tp - 1) / l.tp * std::min(l.k, set_size);
      const int64_t entries = destinations * capacity;
      for (int64_t share = 0; share < l.tp; ++share) {
        const int64_t first = tokens * share / l.tp, last = tokens * (share + 1) / l.tp;
        // Outputs start as values no entry holds, so an entry the kernel skips shows up.
        Pair rows = ints(std::vector<int32_t>(entries, 7777), {entries});
        Pair experts = ints(std::vector<int32_t>(entries, 7777), {entries, 1});
        Pair scales = floats(std::vector<float>(entries, 7777.0f), {entries});
        cpu().pack_dispatch(id.cpu, w.cpu, first, last, set_size, l.shards, capacity, rows.cpu,
                            experts.cpu, scales.cpu);
        gpu().pack_dispatch(id.gpu, w.gpu, first, last, set_size, l.shards, capacity, rows.gpu,
                            experts.gpu, scales.gpu);
        const std::string name = std::to_string(l.experts) + " experts in " +
                                 std::to_string(l.sets) + " sets x " + std::to_string(l.shards) +
                                 " shards, tokens [" + std::to_string(first) + ", " +
                                 std::to_string(last) + ") of " + std::to_string(tokens);
        EXPECT_EQ(read_ints(gpu(), rows.gpu), read_ints(cpu(), rows.cpu)) << "rows, " << name;
        EXPECT_EQ(read_ints(gpu(), experts.gpu), read_ints(cpu(), experts.cpu)) << "experts, " << name;
        EXPECT_EQ(read(gpu(), scales.gpu), read(cpu(), scales.cpu)) << "scales, " << name;
      }
    }
  }
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
