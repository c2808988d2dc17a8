#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "moetron/core/error.hpp"
#include "moetron/parallel/plan.hpp"
#include "../common/memory_budget.hpp"

using namespace moetron;

namespace {

// An MoE config with every layer routed; the shapes that matter to sharding are arguments.
ModelConfig moe_config(int64_t layers, int64_t heads, int64_t kv_heads, int64_t experts,
                       int64_t expert_width) {
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = 64;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = 64 / heads;
  c.intermediate_size = expert_width;
  c.moe_intermediate_size = expert_width;
  c.num_experts = experts;
  c.top_k = 2;
  c.layer_is_moe.assign(layers, true);
  return c;
}

// OLMoE-shaped: 4 q heads over 2 kv heads, 8 experts, q/k norms over the whole projection.
ModelConfig olmoe_like() {
  ModelConfig c = moe_config(4, 4, 2, 8, 32);
  c.qk_norm = QkNorm::WholeProjection;
  return c;
}

// Qwen2-MoE-shaped with a dense first layer and a shared expert; 3 layers (uneven stages).
ModelConfig qwen2_like() {
  ModelConfig c = moe_config(3, 8, 4, 4, 16);
  c.intermediate_size = 64;
  c.shared_expert_intermediate_size = 48;
  c.shared_expert_gate = true;
  c.qkv_bias = true;
  c.layer_is_moe[0] = false;
  return c;
}

// Mixtral-shaped: one kv head (tp > kv heads replicates it), 16 experts.
ModelConfig mixtral_like() { return moe_config(8, 8, 1, 16, 64); }

struct NamedConfig {
  std::string name;
  ModelConfig config;
};
std::vector<NamedConfig> small_configs() {
  return {
      {"olmoe-like", olmoe_like()}, {"qwen2-like", qwen2_like()}, {"mixtral-like", mixtral_like()}};
}

int64_t need_of(const Plan& p, const ModelConfig& c) {
  const MemoryBudget m = cpu_test_memory(0);
  return largest_memory_need(p, c, m.storage, m.run).need.total();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<Plan> all_factorisations(int world) {
  std::vector<Plan> plans;
  for (int pp = 1; pp <= world; ++pp)
    for (int tp = 1; tp <= world; ++tp)
      for (int dp = 1; dp <= world; ++dp)
        for (int ep = 1; ep <= world; ++ep)
          if (pp * tp * dp == world) plans.push_back({pp, tp, dp, ep});
  return plans;
}

// Every index of [0, total) appears exactly once among the ranges.
void expect_partition(const std::vector<Range>& parts, int64_t total, const std::string& what) {
  std::vector<int> hits(static_cast<size_t>(total), 0);
  for (const Range& r : parts) {
    ASSERT_GE(r.begin, 0) << what;
    ASSERT_LE(r.end, total) << what;
    for (int64_t i = r.begin; i < r.end; ++i) ++hits[i];
  }
  for (int64_t i = 0; i < total; ++i) EXPECT_EQ(hits[i], 1) << what << ": index " << i;
}

}  // namespace

TEST(PlanParse, AcceptsFactorsInAnyOrderWithDefaults) {
  EXPECT_EQ(parse_plan("pp=2,tp=2,dp=2,ep=4"), (Plan{2, 2, 2, 4}));
  EXPECT_EQ(parse_plan("dp=8,ep=8"), (Plan{1, 1, 8, 8}));
  EXPECT_EQ(parse_plan("ep=2, tp=2 "), (Plan{1, 2, 1, 2}));
  EXPECT_EQ(parse_plan("tp=1"), Plan{});
  EXPECT_EQ(parse_plan("mb=3,pp=2"), (Plan{2, 1, 1, 1, 3}));
}

TEST(PlanParse, ToStringRoundTrips) {
  Plan p{2, 2, 2, 4};
  EXPECT_EQ(p.to_string(), "pp=2,tp=2,dp=2,ep=4");
  EXPECT_EQ(parse_plan(p.to_string()), p);
  // A pipeline's micro-batches: written only when they are not the engine's default (pp).
  const Plan three{2, 2, 2, 4, 3};
  EXPECT_EQ(three.to_string(), "pp=2,tp=2,dp=2,ep=4,mb=3");
  EXPECT_EQ(parse_plan(three.to_string()), three);
  EXPECT_EQ(three.micro_batch_count(), 3);
  EXPECT_NE(three, p);
  const Plan by_default{4, 1, 1, 1, 4};
  EXPECT_EQ(by_default.to_string(), "pp=4,tp=1,dp=1,ep=1");
  EXPECT_EQ(by_default, (Plan{4, 1, 1, 1}));  // mb=pp is the default, however it was written
  EXPECT_EQ((Plan{4, 1, 1, 1}).micro_batch_count(), 4);
}

TEST(PlanParse, RefusesEachBadFormNamingTheToken) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty value"},
      {"tp", "'tp' is not key=value"},
      {"auto", "'auto' is not key=value"},
      {"xp=2", "unknown factor 'xp'"},
      {"xp=2", "expected pp, tp, dp, ep or mb"},
      {"pp=2,mb=0", "'mb=0' must be positive"},
      {"tp=2,tp=4", "'tp' given twice ('tp=2' and 'tp=4')"},
      {"tp=0", "'tp=0' must be positive"},
      {"tp=-1", "'tp=-1' is not a positive integer"},
      {"tp=2x", "'tp=2x' is not a positive integer"},
      {"tp=", "'tp=' is not a positive integer"},
      {"tp=99999999999", "'tp=99999999999' is not a positive integer"},
      {"tp=2,,dp=2", "empty entry"},
      {"tp=2,", "empty entry"},
  };
  for (const auto& [text, expected] : cases) {
    std::string msg = error_of([&] { parse_plan(text); });
    EXPECT_NE(msg.find("--plan"), std::string::npos) << text << " -> " << msg;
    EXPECT_NE(msg.find(expected), std::string::npos) << text << " -> " << msg;
  }
}

TEST(PlanCoords, RankAndCoordinatesRoundTripWithTensorRanksAdjacent) {
  for (int world : {1, 2, 4, 8, 12}) {
    for (const Plan& p : all_factorisations(world)) {
      if (p.ep != 1) continue;
      for (int r = 0; r < world; ++r) {
        Coords c = coords_of(p, r);
        EXPECT_EQ(rank_of(p, c), r) << p.to_string();
        EXPECT_EQ(r, (c.pp * p.dp + c.dp) * p.tp + c.tp) << p.to_string();
        if (c.tp > 0) {
          EXPECT_EQ(coords_of(p, r - 1).tp, c.tp - 1) << p.to_string();
        }
      }
    }
  }
}

TEST(PlanLayout, ShardsCoverEverythingForEveryValidPlan) {
  for (const auto& [name, c] : small_configs()) {
    for (int world : {1, 2, 4, 8}) {
      for (const Plan& p : enumerate_plans(c, world)) {
        const std::string what = name + " " + p.to_string();
        const int m = p.expert_shards();
        std::vector<ShardLayout> ls;
        for (int r = 0; r < world; ++r) ls.push_back(layout_for(p, c, r));

        std::vector<Range> layers;
        for (int s = 0; s < p.pp; ++s) {
          ShardLayout first = ls[rank_of(p, {s, 0, 0})];
          layers.push_back(first.shard.layers());
          EXPECT_LE(std::abs(first.shard.layers().size() - c.num_layers / p.pp), 1) << what;
          EXPECT_EQ(first.shard.first_stage, s == 0) << what;
          EXPECT_EQ(first.shard.last_stage, s == p.pp - 1) << what;
        }
        expect_partition(layers, c.num_layers, what + " layers");

        for (int s = 0; s < p.pp; ++s) {
          // Tensor-parallel shards, per replica.
          for (int d = 0; d < p.dp; ++d) {
            std::vector<Range> q, kv, dense, shared, vocab;
            for (int t = 0; t < p.tp; ++t) {
              const ShardLayout& l = ls[rank_of(p, {s, d, t})];
              EXPECT_EQ(l.shard.layers(), ls[rank_of(p, {s, 0, 0})].shard.layers()) << what;
              q.push_back(l.shard.q_heads());
              kv.push_back(l.shard.kv_heads());
              dense.push_back(l.shard.dense_columns());
              shared.push_back(l.shard.shared_expert_columns());
              vocab.push_back(l.shard.vocab());
              // Each q head's kv head (HF's grouping) is one this rank holds.
              const int64_t group = c.num_heads / c.num_kv_heads;
              for (int64_t h = l.shard.q_heads().begin; h < l.shard.q_heads().end; ++h)
                EXPECT_TRUE(l.shard.kv_heads().contains(h / group)) << what << " q head " << h;
              EXPECT_EQ(l.shard.kv_replicated(), p.tp > c.num_kv_heads) << what;
            }
            expect_partition(q, c.num_heads, what + " q heads");
            if (p.tp <= c.num_kv_heads) {
              expect_partition(kv, c.num_kv_heads, what + " kv heads");
            } else {
              std::map<int64_t, int> holders;
              for (const Range& r : kv) {
                EXPECT_EQ(r.size(), 1) << what;
                ++holders[r.begin];
              }
              EXPECT_EQ(static_cast<int64_t>(holders.size()), c.num_kv_heads) << what;
              for (const auto& [head, n] : holders) EXPECT_EQ(n, p.tp / c.num_kv_heads) << what;
            }
            bool dense_layers = false;
            for (bool moe : c.layer_is_moe) dense_layers |= !moe;
            if (dense_layers) expect_partition(dense, c.intermediate_size, what + " dense");
            expect_partition(shared, c.shared_expert_intermediate_size, what + " shared");
            expect_partition(vocab, c.vocab_size, what + " vocab");
            for (const Range& r : vocab) EXPECT_LE(r.size(), ls[rank_of(p, {s, d, 0})].shard.vocab_rows) << what;
          }
          // Experts: each one's columns covered exactly once across the stage's m holders.
          std::vector<std::vector<Range>> columns(c.num_experts);
          for (int g = 0; g < p.stage_size(); ++g) {
            const ShardLayout& l = ls[rank_of(p, {s, g / p.tp, g % p.tp})];
            EXPECT_EQ(l.stage_index, g) << what;
            EXPECT_EQ(l.expert_set, g / m) << what;
            EXPECT_EQ(l.expert_shard, g % m) << what;
            EXPECT_EQ(l.shard.experts().size(), c.num_experts / p.ep) << what;
            for (int64_t e = l.shard.experts().begin; e < l.shard.experts().end; ++e)
              columns[e].push_back(l.shard.expert_columns());
          }
          for (int64_t e = 0; e < c.num_experts; ++e) {
            EXPECT_EQ(static_cast<int>(columns[e].size()), m) << what << " expert " << e;
            expect_partition(columns[e], c.moe_intermediate_size,
                             what + " expert " + std::to_string(e));
          }
        }
      }
    }
  }
}

TEST(PlanLayout, ExampleFromTheIssue) {
  // 8 ranks, pp=2,tp=2,dp=2,ep=4: m = 1, so rank 5 (stage 1, replica 0, tp 1; g = 1) holds
  // whole experts 2 and 3 of 8.
  ShardLayout l = layout_for(Plan{2, 2, 2, 4}, olmoe_like(), 5);
  EXPECT_EQ(l.coords, (Coords{1, 0, 1}));
  EXPECT_EQ(l.shard.layers(), (Range{2, 4}));
  EXPECT_EQ(l.shard.q_heads(), (Range{2, 4}));
  EXPECT_EQ(l.shard.kv_heads(), (Range{1, 2}));
  EXPECT_EQ(l.shard.experts(), (Range{2, 4}));
  EXPECT_EQ(l.shard.expert_columns(), (Range{0, 32}));
  EXPECT_EQ(l.shard.vocab(), (Range{128, 256}));
  EXPECT_FALSE(l.shard.holds_o_bias);  // tp rank 1: rank 0 adds the row-parallel biases
  EXPECT_TRUE(layout_for(Plan{2, 2, 2, 4}, olmoe_like(), 4).shard.holds_o_bias);
  EXPECT_FALSE(l.shard.first_stage);
  EXPECT_TRUE(l.shard.last_stage);
  // dp=8,ep=8 on 8 ranks: one whole expert each; ep=2: 4 ranks share a set, 8 columns each.
  EXPECT_EQ(layout_for(Plan{1, 1, 8, 8}, olmoe_like(), 6).shard.experts(), (Range{6, 7}));
  ShardLayout shared = layout_for(Plan{1, 1, 8, 2}, olmoe_like(), 6);
  EXPECT_EQ(shared.shard.experts(), (Range{4, 8}));
  EXPECT_EQ(shared.shard.expert_columns(), (Range{16, 24}));
}

TEST(PlanLayout, ReplicatedKvHeadFollowsItsQueryHeads) {
  // 8 q heads over 2 kv heads on tp=4: ranks 0,1 use kv head 0; ranks 2,3 kv head 1.
  ModelConfig c = olmoe_like();
  c.num_heads = 8;
  c.num_kv_heads = 2;
  for (int t = 0; t < 4; ++t) {
    ShardLayout l = layout_for(Plan{1, 4, 1, 1}, c, t);
    EXPECT_TRUE(l.shard.kv_replicated());
    EXPECT_EQ(l.shard.kv_replication, 2);
    EXPECT_EQ(l.shard.kv_heads(), (Range{t / 2, t / 2 + 1}));
  }
}

TEST(PlanValidate, RefusesEachImpossibleCaseWithItsReason) {
  struct Case {
    Plan plan;
    ModelConfig config;
    int world;
    int64_t memory;
    std::string reason;
  };
  ModelConfig odd_heads = olmoe_like();
  odd_heads.num_heads = 6;
  odd_heads.num_kv_heads = 3;
  ModelConfig kv3 = olmoe_like();
  kv3.num_heads = 12;
  kv3.num_kv_heads = 3;
  ModelConfig kv4 = olmoe_like();
  kv4.num_heads = 12;
  kv4.num_kv_heads = 4;
  ModelConfig inter = olmoe_like();
  inter.moe_intermediate_size = 36;
  ModelConfig dense = qwen2_like();
  dense.intermediate_size = 66;
  ModelConfig shared = qwen2_like();
  shared.shared_expert_intermediate_size = 50;
  const std::vector<Case> cases = {
      {{1, 2, 2, 1}, olmoe_like(), 8, 0, "pp*tp*dp = 4 but the job has 8 ranks"},
      {{1, 4, 1, 1}, odd_heads, 4, 0, "6 attention heads do not split evenly over tp=4"},
      {{1, 2, 1, 1}, kv3, 2, 0, "3 key/value heads do not split evenly over tp=2"},
      {{1, 6, 1, 1}, kv4, 6, 0, "tp=6 exceeds the 4 key/value heads but is not a multiple"},
      {{1, 1, 4, 3}, olmoe_like(), 4, 0, "ep=3 does not divide the tp*dp=4"},
      {{1, 1, 3, 3}, olmoe_like(), 3, 0, "8 experts do not split into ep=3"},
      {{8, 1, 1, 1}, olmoe_like(), 8, 0, "4 layers, fewer than pp=8"},
      {{1, 1, 8, 1}, inter, 8, 0, "expert intermediate size 36 does not split into the 8"},
      {{1, 4, 1, 4}, dense, 4, 0, "dense MLP intermediate size 66"},
      {{1, 4, 1, 4}, shared, 4, 0, "shared expert intermediate size 50"},
      {{1, 1, 1, 1}, olmoe_like(), 1, 1000, "rank 0 needs"},
      {{0, 1, 1, 1}, olmoe_like(), 0, 0, "every factor must be positive"},
      {{1, 1, 1, 1, 2}, olmoe_like(), 1, 0, "mb=2 splits a step between pipeline stages, and pp=1 has one"},
      {{2, 1, 1, 1, kMaxMicroBatches + 1}, olmoe_like(), 2, 0, "micro-batches: at most 4096"},
  };
  for (const Case& k : cases) {
    std::string msg = error_of([&] { validate_plan(k.plan, k.config, k.world, cpu_test_memory(k.memory)); });
    EXPECT_NE(msg.find("--plan " + k.plan.to_string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(k.reason), std::string::npos) << k.plan.to_string() << ": " << msg;
  }
  EXPECT_NO_THROW(validate_plan({2, 2, 2, 4}, olmoe_like(), 8, cpu_test_memory(1 << 30)));
  EXPECT_NO_THROW(validate_plan({2, 2, 2, 4, 1}, olmoe_like(), 8, cpu_test_memory(1 << 30)));
  EXPECT_NO_THROW(validate_plan({1, 2, 2, 4, 1}, olmoe_like(), 4, cpu_test_memory(1 << 30)));
}

TEST(PlanEnumerate, MatchesBruteForce) {
  for (const auto& [name, c] : small_configs()) {
    for (int world : {1, 2, 4, 8}) {
      std::set<std::string> expected;
      for (const Plan& p : all_factorisations(world)) {
        // The issue's rules, restated: heads and kv heads shard or replicate, ep divides the
        // stage and the experts, every stage has a layer, every sharded width divides.
        const int64_t stage = p.tp * p.dp;
        bool kv_ok = c.num_kv_heads % p.tp == 0 || p.tp % c.num_kv_heads == 0;
        bool ok = c.num_heads % p.tp == 0 && kv_ok && stage % p.ep == 0 &&
                  c.num_experts % p.ep == 0 && c.num_layers >= p.pp &&
                  (stage % p.ep != 0 || c.moe_intermediate_size % (stage / p.ep) == 0) &&
                  c.shared_expert_intermediate_size % p.tp == 0;  // any vocabulary: padded
        bool has_dense = false;
        for (bool moe : c.layer_is_moe) has_dense |= !moe;
        if (has_dense) ok = ok && c.intermediate_size % p.tp == 0;
        if (ok) expected.insert(p.to_string());
      }
      std::set<std::string> got;
      for (const Plan& p : enumerate_plans(c, world)) {
        EXPECT_TRUE(got.insert(p.to_string()).second) << "listed twice: " << p.to_string();
        EXPECT_NO_THROW(validate_plan(p, c, world, MemoryBudget{})) << p.to_string();
      }
      EXPECT_EQ(got, expected) << name << " on " << world << " ranks";
    }
  }
  std::vector<Plan> eight = enumerate_plans(olmoe_like(), 8);
  EXPECT_NE(std::find(eight.begin(), eight.end(), Plan{2, 2, 2, 4}), eight.end());
  EXPECT_NE(std::find(eight.begin(), eight.end(), Plan{1, 1, 8, 8}), eight.end());
}

TEST(PlanMemory, ShardParamsAddUpToTheWholeModel) {
  const ModelConfig c = olmoe_like();
  const int64_t h = 64, attn = 2 * h * 64 + 2 * h * 32, norms = 2 * h, qk = 64 + 32;
  const int64_t per_layer = norms + attn + qk + 8 * h + 8 * 3 * h * 32;
  const int64_t whole = 4 * per_layer + 256 * h + h + 256 * h;
  EXPECT_EQ(weight_shard_params(c, layout_for(Plan{}, c, 0).shard), whole);
  // Experts split without loss: the expert bytes of a stage add up to the model's.
  for (const Plan& p : enumerate_plans(c, 8)) {
    int64_t expert_params = 0;
    for (int r = 0; r < p.stage_size(); ++r) {
      ShardLayout l = layout_for(p, c, r);
      expert_params += l.shard.experts().size() * l.shard.expert_columns().size();
    }
    EXPECT_EQ(expert_params, 8 * 32) << p.to_string();
  }
  for (int r = 0; r < 8; ++r) EXPECT_LT(weight_shard_params(c, layout_for(Plan{2, 1, 4, 4}, c, r).shard), whole);
}

TEST(PlanAuto, PrefersWholeExpertsWithoutPipelineWhenMemoryAllows) {
  const ModelConfig c = olmoe_like();
  EXPECT_EQ(choose_auto_plan(c, 1, MemoryBudget{}, 1), Plan{});
  EXPECT_EQ(choose_auto_plan(c, 8, MemoryBudget{}, 8), (Plan{1, 1, 8, 8}));
  EXPECT_EQ(choose_auto_plan(c, 2, MemoryBudget{}, 2), (Plan{1, 1, 2, 2}));
}

// Six experts of 24 columns over 4 ranks: ep is at most 2, so every one-stage plan splits each
// expert into 12- or 6-column slices, which the CUDA expert kernels cannot run (multiples of 8).
// The fallback choice (no prediction) must then take two stages on CUDA, and say why when no plan
// can run at all.
TEST(PlanAuto, OnCudaSkipsPlansItsExpertKernelsCannotRun) {
  const ModelConfig c = moe_config(4, 4, 2, 6, 24);
  const Plan on_cpu = choose_auto_plan(c, 4, cpu_test_memory(0), 4);
  EXPECT_FALSE(cuda_plan_problem(on_cpu, c).empty()) << on_cpu.to_string() << ": the case tests nothing";
  const Plan on_cuda = choose_auto_plan(c, 4, MemoryBudget{}, 4);  // the budget's backend: cuda
  EXPECT_TRUE(cuda_plan_problem(on_cuda, c).empty()) << on_cuda.to_string();
  EXPECT_EQ(on_cuda, (Plan{2, 1, 2, 2}));
  const ModelConfig odd = moe_config(4, 4, 2, 8, 44);  // 44 columns: no slice of it runs
  EXPECT_NO_THROW(choose_auto_plan(odd, 2, cpu_test_memory(0), 2));
  const std::string msg = error_of([&] { choose_auto_plan(odd, 2, MemoryBudget{}, 2); });
  EXPECT_NE(msg.find("--plan auto: no plan over 2 ranks can run on CUDA"), std::string::npos) << msg;
  EXPECT_NE(msg.find("44 columns"), std::string::npos) << msg;
}

TEST(PlanAuto, UsesPipelineStagesOnlyWhenMemoryRequires) {
  const ModelConfig c = olmoe_like();
  for (int world : {2, 4, 8}) {
    int64_t one_stage_best = INT64_MAX;
    for (const Plan& p : enumerate_plans(c, world))
      if (p.pp == 1) one_stage_best = std::min(one_stage_best, need_of(p, c));
    Plan p = choose_auto_plan(c, world, cpu_test_memory(one_stage_best - 1), world);
    EXPECT_GT(p.pp, 1) << world;
    EXPECT_LE(need_of(p, c), one_stage_best - 1);
    EXPECT_NO_THROW(validate_plan(p, c, world, cpu_test_memory(one_stage_best - 1)));
    EXPECT_EQ(choose_auto_plan(c, world, cpu_test_memory(one_stage_best), world).pp, 1) << world;
  }
  std::string msg = error_of([&] { choose_auto_plan(c, 8, cpu_test_memory(1000), 8); });
  EXPECT_NE(msg.find("--plan auto: no plan fits on 8 ranks; the one needing the least, --plan "), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("but a rank has 1000.00 B"), std::string::npos) << msg;
}

// The KV cache, not just the weights, decides: with one kv head, tp replicates it and dp holds
// every layer, so only two stages (each half the layers) hold a cpu cache for 64k tokens.
TEST(PlanAuto, CountsTheKvCacheWhenChoosingStages) {
  const ModelConfig c = mixtral_like();
  MemoryBudget m = cpu_test_memory(0);
  m.run.kv_tokens = 65536;
  const auto need = [&](const Plan& p) { return largest_memory_need(p, c, m.storage, m.run).need.total(); };
  int64_t one_stage_best = INT64_MAX;
  for (const Plan& p : enumerate_plans(c, 2))
    if (p.pp == 1) one_stage_best = std::min(one_stage_best, need(p));
  const int64_t two_stages = need(Plan{2, 1, 1, 1});
  ASSERT_LT(two_stages, one_stage_best);
  m.bytes_per_rank = (one_stage_best + two_stages) / 2;
  EXPECT_EQ(choose_auto_plan(c, 2, m, 2), (Plan{2, 1, 1, 1}));
  m.bytes_per_rank = two_stages - 1;
  EXPECT_NE(error_of([&] { choose_auto_plan(c, 2, m, 2); }).find("the KV cache does not fit beside the weights and activations"),
            std::string::npos);
}

TEST(PlanAuto, ResolveTakesAutoOrAnExplicitPlan) {
  const ModelConfig c = olmoe_like();
  EXPECT_EQ(resolve_plan("auto", c, 4, MemoryBudget{}, 4), (Plan{1, 1, 4, 4}));
  EXPECT_EQ(resolve_plan("tp=2,dp=2", c, 4, MemoryBudget{}, 4), (Plan{1, 2, 2, 1}));
  std::string msg = error_of([&] { resolve_plan("tp=2", c, 4, MemoryBudget{}, 4); });
  EXPECT_NE(msg.find("but the job has 4 ranks"), std::string::npos) << msg;
}

// Any vocabulary splits over any tp: every rank holds ceil(V / tp) LM-head rows, its real tokens
// are the next ceil(V / tp) ids cut at V, and the rows past them are padding.
TEST(PlanVocab, PadsAVocabularyThatTpDoesNotDivide) {
  EXPECT_EQ(vocab_shard_rows(256, 2), 128);
  EXPECT_EQ(vocab_shard_rows(1001, 2), 501);
  EXPECT_EQ(vocab_shard_rows(997, 4), 250);
  EXPECT_EQ(vocab_shard(1001, 2, 0), (Range{0, 501}));
  EXPECT_EQ(vocab_shard(1001, 2, 1), (Range{501, 1001}));  // 500 real rows, 1 padding
  EXPECT_EQ(vocab_shard(997, 4, 3), (Range{750, 997}));    // 247 real rows, 3 padding
  // More padding than a rank's share: the last rank holds padding only.
  EXPECT_EQ(vocab_shard_rows(5, 4), 2);
  EXPECT_EQ(vocab_shard(5, 4, 2), (Range{4, 5}));
  EXPECT_EQ(vocab_shard(5, 4, 3), (Range{5, 5}));
  for (int64_t vocab : {1, 5, 255, 997, 1001, 1024})
    for (int64_t tp : {1, 2, 3, 4, 8}) {
      std::vector<Range> parts;
      for (int64_t r = 0; r < tp; ++r) {
        parts.push_back(vocab_shard(vocab, tp, r));
        EXPECT_LE(parts.back().size(), vocab_shard_rows(vocab, tp));
      }
      expect_partition(parts, vocab, "vocab " + std::to_string(vocab) + " tp " + std::to_string(tp));
      EXPECT_LT(tp * vocab_shard_rows(vocab, tp) - vocab, tp);  // less than one row a rank
    }

  ModelConfig odd = olmoe_like();
  odd.vocab_size = 1001;
  EXPECT_NO_THROW(validate_plan({1, 2, 1, 1}, odd, 2, MemoryBudget{}));
  const ShardLayout last = layout_for({2, 4, 1, 1}, odd, 7);
  EXPECT_EQ(last.shard.vocab(), (Range{753, 1001}));
  EXPECT_EQ(last.shard.vocab_rows, 251);
  // The padding rows are held, so they count in the parameters (hidden 64).
  ShardSpec unpadded = last.shard;
  unpadded.vocab_rows = last.shard.vocab_count;
  EXPECT_EQ(weight_shard_params(odd, last.shard) - weight_shard_params(odd, unpadded), 3 * 64);
  std::string line = describe({2, 4, 1, 1}, last, 7);
  EXPECT_NE(line.find("LM head vocab [753, 1001) (+3 padding rows)"), std::string::npos) << line;
}

TEST(PlanDescribe, SaysWhatTheRankHolds) {
  const Plan p{2, 2, 2, 4};
  std::string line = describe(p, layout_for(p, olmoe_like(), 7), 7);
  EXPECT_EQ(line,
            "rank 7 (stage 1, replica 1, tp 1) of pp=2,tp=2,dp=2,ep=4: layers [2, 4), q heads "
            "[2, 4), kv heads [1, 2), experts [6, 8) columns [0, 32) (shard 0 of 1), LM head "
            "vocab [128, 256)");
}
