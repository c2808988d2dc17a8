// The predictor: every plan is ranked, the memory check refuses what does not fit, predictions
// move the way physics says, a tiny step is priced as by hand, skewed routing slows expert
// parallelism, the rankings stay below what the engine measured, and 1,024 GPUs rank quickly.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "../common/fixtures_root.hpp"
#include "error_of.hpp"
#include "moetron/backend/expert_paths.hpp"
#include "moetron/io/hdf5.hpp"
#include "moetron/engine/run_session.hpp"
#include "moetron/io/results.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/predict/plan_costs.hpp"
#include "moetron/predict/prediction_file.hpp"
#include "moetron/predict/predictor.hpp"
#include "moetron/predict/profile_cost_model.hpp"
#include "moetron/predict/roofline_cost_model.hpp"
#include "moetron/predict/routing_file.hpp"
#include "model_test_helpers.hpp"
#include "predictor_test_helpers.hpp"
#include "../common/moe_config.hpp"

namespace moetron {
namespace {

using predictor_test::preset;
using predictor_test::small_workload;

ModelConfig fixture(const std::string& family) {
  return load_model_config(test::fixture_dir(family) + "/config.json");
}

Cluster cluster_of(int ranks, int per_node, int64_t memory = 0) { return {ranks, per_node, memory, 0}; }

std::tuple<int, int, int, int, int> key(const Plan& p) { return {p.pp, p.tp, p.dp, p.ep, p.micro_batch_count()}; }

// Every layout a brute-force search finds, pipelines with 1, pp and 2 pp micro-batches (the small
// workload's 16 sequences and 4 prompts a step tell every count apart up to pp = 12).
TEST(Predictor, RanksEveryPlanABruteForceSearchFinds) {
  const RooflineCostModel cost(hardware_preset("cpu"));
  for (const std::string family : {"mixtral", "qwen2_moe", "olmoe", "qwen3_moe"}) {
    const ModelConfig c = fixture(family);
    for (int world = 1; world <= 12; ++world) {
      std::set<std::tuple<int, int, int, int, int>> brute;
      for (int pp = 1; pp <= world; ++pp)
        for (int tp = 1; tp <= world; ++tp)
          for (int dp = 1; dp <= world; ++dp)
            for (int ep = 1; ep <= world; ++ep)
              for (int mb = 1; mb <= 2 * world; ++mb) {
                const Plan p{pp, tp, dp, ep, mb};
                const bool tried = pp == 1 || mb == 1 || mb == pp || mb == 2 * pp;
                if (tried && p.world_size() == world && plan_problem(p, c).empty()) brute.insert(key(p));
              }
      std::set<std::tuple<int, int, int, int, int>> ranked;
      for (const PlanPrediction& p : predict_plans(c, small_workload(), cluster_of(world, 4), cost, {})) {
        EXPECT_TRUE(ranked.insert(key(p.plan)).second) << family << ": " << p.plan.to_string() << " twice";
        EXPECT_TRUE(p.fits) << family << " " << p.plan.to_string() << ": " << p.refusal;  // memory unknown
      }
      EXPECT_EQ(ranked, brute) << family << " on " << world << " ranks";
    }
  }
}

// The bf16 bytes of the largest weight shard of the plan (what a CUDA rank holds).
int64_t largest_weight_bytes(const Plan& p, const ModelConfig& c) {
  int64_t most = 0;
  for (int r = 0; r < p.world_size(); ++r)
    most = std::max(most, 2 * weight_shard_params(c, layout_for(p, c, r).shard));
  return most;
}

TEST(Predictor, RefusesWhatDoesNotFit) {
  // Every plan splits the experts over all ranks; what differs is what they replicate.
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const RooflineCostModel cost(hardware_preset("h100"));
  const Cluster unknown = cluster_of(4, 4);
  int64_t least = INT64_MAX, most = 0;
  for (const Plan& p : enumerate_plans(c, 4)) {
    least = std::min(least, largest_weight_bytes(p, c));
    most = std::max(most, largest_weight_bytes(p, c));
  }
  ASSERT_GT(most - least, int64_t{200} << 20);
  const int64_t memory = most - 1;
  const auto ranking = predict_plans(c, small_workload(), cluster_of(4, 4, memory), cost, {});
  int fitting = 0;
  for (const PlanPrediction& p : ranking) {
    const int64_t weights = largest_weight_bytes(p.plan, c);
    if (p.fits) {
      ++fitting;
      EXPECT_LE(p.memory.total(), memory) << p.plan.to_string();
      EXPECT_EQ(p.memory.weights, weights) << p.plan.to_string();
    } else {
      EXPECT_NE(p.refusal.find("of weights"), std::string::npos) << p.refusal;
    }
    if (weights == most) {
      EXPECT_FALSE(p.fits) << p.plan.to_string();
    }
    if (weights == least) {
      EXPECT_TRUE(p.fits) << p.plan.to_string() << ": " << p.refusal;
    }
    // Memory unknown: everything fits.
    EXPECT_TRUE(predict_plan(c, p.plan, small_workload(), unknown, cost, {}).fits);
  }
  EXPECT_GT(fitting, 0);
  EXPECT_LT(fitting, static_cast<int>(ranking.size()));
  EXPECT_TRUE(std::is_partitioned(ranking.begin(), ranking.end(), [](const PlanPrediction& p) { return p.fits; }));

  // 14 GiB hold the 12.9 GiB of weights and a 1,024-token request's KV cache, not a 4,096-token one's.
  Workload w = small_workload();
  for (const int64_t prompt : {1024, 4096}) {
    w.prompt_tokens = w.max_batch_tokens = prompt;
    const PlanPrediction p = predict_plan(c, Plan{}, w, cluster_of(1, 1, int64_t{14} << 30), cost, {});
    EXPECT_EQ(p.fits, prompt == 1024) << p.refusal;
    if (!p.fits) {
      EXPECT_EQ(p.refusal.find("the KV cache has room for"), 0u) << p.refusal;
    }
  }
}

// Every plan of a 64-rank cluster, under figures `f`.
std::vector<PlanPrediction> by_plan(const ModelConfig& c, const HardwareFigures& f) {
  Workload w = small_workload();
  w.requests = 4096;
  w.max_batch = 128;
  w.prompt_tokens = 256;
  w.max_batch_tokens = 2048;
  const PlanCosts costs(f, nullptr);
  PredictorOptions options;
  options.ceiling = &costs.ceiling();
  auto all = predict_plans(c, w, cluster_of(64, 8, f.memory_bytes), costs.estimate(), options);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return key(a.plan) < key(b.plan); });
  return all;
}

TEST(Predictor, FasterHardwareNeverPredictsSlower) {
  const ModelConfig c = preset(Family::Qwen3Moe, "qwen3-30b-a3b");
  const HardwareFigures base = hardware_preset("h100");
  const auto before = by_plan(c, base);
  const std::vector<std::pair<std::string, void (*)(HardwareFigures&)>> faster = {
      {"hbm", [](HardwareFigures& f) { f.hbm_bytes_per_s *= 2; }},
      {"flops", [](HardwareFigures& f) { f.gemm_flops *= 2; }},
      {"intra bandwidth", [](HardwareFigures& f) { f.intra.bytes_per_s *= 2; }},
      {"inter bandwidth", [](HardwareFigures& f) { f.inter.bytes_per_s *= 2; }},
      {"latency", [](HardwareFigures& f) { f.intra.latency_s /= 2, f.inter.latency_s /= 2; }},
      {"kernel gaps", [](HardwareFigures& f) { f.launch_s /= 2, f.graph_node_s /= 2; }}};
  for (const auto& [what, change] : faster) {
    HardwareFigures f = base;
    change(f);
    const auto after = by_plan(c, f);
    ASSERT_EQ(after.size(), before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      const auto &a = after[i], &b = before[i];
      const std::string where = what + ", " + a.plan.to_string();
      EXPECT_EQ(a.fits, b.fits) << where;
      EXPECT_LE(a.decode.total_s(), b.decode.total_s() * (1 + 1e-12)) << where;
      EXPECT_LE(a.prefill.total_s(), b.prefill.total_s() * (1 + 1e-12)) << where;
      EXPECT_GE(a.output_tokens_per_s, b.output_tokens_per_s * (1 - 1e-12)) << where;
      EXPECT_LE(a.ttft_s, b.ttft_s * (1 + 1e-12)) << where;
      EXPECT_GE(a.ceiling.output_tokens_per_s, b.ceiling.output_tokens_per_s * (1 - 1e-12)) << where;
      EXPECT_LE(a.ceiling.decode.total_s(), b.ceiling.decode.total_s() * (1 + 1e-12)) << where;
    }
  }
}

TEST(Predictor, MoreTokensNeverMakeAStepFaster) {
  const ModelConfig c = preset(Family::Qwen3Moe, "qwen3-30b-a3b");
  const RooflineCostModel cost(hardware_preset("h200"));
  for (const Plan& plan : {Plan{1, 1, 1, 1}, Plan{1, 2, 4, 8}, Plan{2, 4, 2, 4}, Plan{4, 1, 2, 2}}) {
    const PlanGeometry g = plan_geometry(c, plan, 8);
    double last = 0;
    for (int64_t batch = 1; batch <= 300; batch += 7) {
      const double t = step_cost(g, {}, {batch, 1, 600, false, plan.pp}, cost).total_s();
      EXPECT_GE(t, last) << plan.to_string() << " decode batch " << batch;
      last = t;
    }
    last = 0;
    for (int64_t context = 1; context <= 8192; context *= 2) {
      const double t = step_cost(g, {}, {32, 1, context, false, plan.pp}, cost).total_s();
      EXPECT_GE(t, last) << plan.to_string() << " decode context " << context;
      last = t;
    }
    last = 0;
    for (int64_t prompts = 1; prompts <= 16; ++prompts) {
      const double t = step_cost(g, {}, {prompts, 512, 512, true, plan.pp}, cost).total_s();
      EXPECT_GE(t, last) << plan.to_string() << " prefill prompts " << prompts;
      last = t;
    }
  }
}

// One MoE layer: vocabulary 8, hidden 4, 2 query heads over 1 kv head of 2, 2 experts of 4, top-1.
ModelConfig tiny_config() { return moe_config({8, 4, 1, 2, 1, 2, 4, 2, 1}); }

TEST(Predictor, TinyDecodeStepAsComputedByHand) {
  HardwareFigures f;
  f.name = "unit";
  f.gemm_flops = 1e9;       // a FLOP and a byte both take 1 ns
  f.hbm_bytes_per_s = 1e9;
  f.graph_node_s = 1e-6;
  f.launch_s = 5e-6;
  f.intra = f.inter = {1e9, 1e-3};  // unused: one rank
  const RooflineCostModel cost(f);
  const ModelConfig c = tiny_config();
  // One sequence decoding one token at context 3, on one rank (pp = 1: a recorded graph).
  const StepCost s = step_cost(plan_geometry(c, Plan{}, 1), {}, {1, 1, 3, false, 1}, cost);
  // Each kernel: max(FLOPs, bytes) in ns, bf16 = 2 bytes.
  const double by_hand[] = {
      16,  // embed: read and write a row of 4
      16,  // rmsnorm (the stage's first layer): read and write 4
      88,  // qkv = gemm(1, 4 + 2 + 2, 4): 64 FLOPs, 2 * (4 + 32 + 8) bytes
      32,  // attention_inputs: q, k, v (8) read, q written and k, v into the cache
      48,  // attention: 4 * 3 keys * 4 q columns FLOPs (40 bytes)
      48,  // o = gemm(1, 4, 4)
      32,  // add_rmsnorm: hidden and delta read, both written
      28,  // router = gemm(1, 2, 4)
      16,  // router_topk: 2 float32 logits, one (id, weight)
      88,  // experts' gate/up: one expert active (1 - (1 - 1/2)^1 of 2), [4 x 8] weights + row in/out
      48,  // experts' down: [4 x 4] weights + row in/out
      24,  // the last residual add: 3 rows of 4
      16,  // gather the logit row
      16,  // final norm
      88,  // lm head = gemm(1, 8, 4): 2 * (4 + 32 + 8) bytes
      48,  // to float32: 8 bf16 read, 8 float32 written
      32,  // argmax: 8 float32
  };
  double compute_ns = 0;
  for (double t : by_hand) compute_ns += t;
  EXPECT_NEAR(s.compute_s, compute_ns * 1e-9, 1e-15);  // 684 ns
  EXPECT_NEAR(s.kernel_overhead_s, 17 * 1e-6, 1e-15);  // 16 Ops calls, moe_experts two kernels
  EXPECT_EQ(s.tp_comm_s + s.expert_comm_s + s.pipeline_comm_s + s.bubble_s + s.host_sync_s + s.imbalance_s, 0);
  EXPECT_NEAR(s.total_s(), 684e-9 + 17e-6, 1e-15);
}

// An emulated rank (moetron run --emulate-rank) copies locally what each collective would move
// on it (EmulatedCommunicator): the predictor prices those copies in emulation_s, as the
// communicator makes them, and keeps them out of the step. At fixed work a replica (4 decode
// tokens, OLMoE's 64 experts top-8), dp = ep = N: every MoE layer's three all-to-alls (rows,
// expert ids, results back) each fill N blocks of the decode capacity by 1 + ceil(log2 N) copies
// of N blocks' bytes in all, and the peers' blocks are packed as their replicas route them; a tp
// all-reduce is one copy, the vocabulary allgather fills tp slots.
TEST(Predictor, PricesAnEmulatedRanksStandInCopiesApartFromTheStep) {
  HardwareFigures f;
  f.name = "unit";
  f.gemm_flops = 1e12;
  f.hbm_bytes_per_s = 1e9;  // a byte read or written: 1 ns
  f.graph_node_s = 1e-6;
  f.launch_s = 5e-6;
  f.intra = f.inter = {1e9, 1e-3};
  const RooflineCostModel cost(f);
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const int64_t H = c.hidden_size, T = 4, layers = c.num_moe_layers();
  const StepShape decode{T, 1, 100, false, 1, true, true, 2};  // a recorded step: graph-node gaps
  const auto copies = [](int64_t n) {  // fill_repeated's copies for n blocks
    int64_t k = 1;
    for (int64_t filled = 1; filled < n; filled *= 2) ++k;
    return k;
  };
  EXPECT_EQ(copies(1), 1);
  EXPECT_EQ(copies(2), 2);
  EXPECT_EQ(copies(16), 5);
  EXPECT_EQ(copies(64), 7);
  EXPECT_EQ(step_cost(plan_geometry(c, Plan{}, 1), {}, decode, cost).emulation_s, 0);  // no collective

  double previous = 0;
  for (int n : {2, 4, 8, 16, 32, 64}) {
    SCOPED_TRACE(std::to_string(n) + " ranks");
    const Plan plan{1, 1, n, n};
    const StepCost s = step_cost(plan_geometry(c, plan, n), {}, decode, cost);
    const int64_t capacity = T * std::min<int64_t>(c.top_k, c.num_experts / n);  // entries a peer
    const int64_t rows = n * capacity;
    double by_hand = 0;
    for (const int64_t row_bytes : {H * 2, int64_t{4}, H * 2})
      by_hand += copies(n) * f.graph_node_s + 2.0 * rows * row_bytes * 1e-9;
    // The peers' blocks as their replicas route them (--emulate-peers rotated): one
    // pack_from_peers (each peer reads its T x k ids, the block's rows and experts are written),
    // the rows gathered over the all-to-all's copies, the expert ids copied.
    by_hand += 3 * f.graph_node_s + (n * T * c.top_k * 4 + rows * 8) * 1e-9 + 2.0 * rows * H * 2 * 1e-9 +
               2.0 * rows * 4 * 1e-9;
    EXPECT_NEAR(s.emulation_s, layers * by_hand, 1e-12);
    EXPECT_GT(s.emulation_s, previous);  // more copies (and, to 8 ranks, more bytes) a layer
    previous = s.emulation_s;
    // Not the real rank's time: the step is the sum of the other parts.
    EXPECT_NEAR(s.total_s(), s.compute_s + s.kernel_overhead_s + s.tp_comm_s + s.expert_comm_s + s.pipeline_comm_s +
                                 s.bubble_s + s.host_sync_s + s.host_s, 1e-15);
    // What the emulated rank measures: its kernels, gaps, copies and host bookkeeping, no comm.
    EXPECT_NEAR(s.emulated_rank_s(), s.compute_s + s.kernel_overhead_s + s.emulation_s + s.host_s, 1e-15);
    EXPECT_GT(s.expert_comm_s, 0);
  }

  // tp = 2, one replica: a copy per all-reduce (attention's and the MoE block's; the QK norms'
  // sums, two a layer, when they span the whole projection) and the logits' allgather (2 slots).
  const StepCost tp = step_cost(plan_geometry(c, Plan{1, 2, 1, 1}, 2), {}, decode, cost);
  const double per_copy = f.graph_node_s;
  double by_hand = c.num_layers * 2 * (per_copy + 2.0 * T * H * 2 * 1e-9);
  if (c.qk_norm == QkNorm::WholeProjection) by_hand += c.num_layers * 2 * (per_copy + 2.0 * T * 4 * 1e-9);
  const int64_t slice = T * ((c.vocab_size + 1) / 2) * 4;
  by_hand += copies(2) * per_copy + 2.0 * 2 * slice * 1e-9;
  EXPECT_NEAR(tp.emulation_s, by_hand, 1e-12);
}

// The roofline, recording the token count of every expert call it prices.
class CallTokenSpy : public RooflineCostModel {
 public:
  using RooflineCostModel::RooflineCostModel;
  double grouped_gemm_s(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k,
                        int64_t call_tokens, bool by_gemms = false) const override {
    calls.insert(call_tokens);
    return RooflineCostModel::grouped_gemm_s(tokens_per_expert, experts, n, k, call_tokens, by_gemms);
  }
  mutable std::set<int64_t> calls;
};

TEST(Predictor, PricesTheExpertCallAtTheTokenCountThatPicksItsKernel) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  // One replica: the call holds the step's tokens (decode batch 4 runs GEMVs on CUDA).
  for (int64_t batch : {1, 4, 13}) {
    const CallTokenSpy spy(hardware_preset("h200"));
    step_cost(plan_geometry(c, Plan{}, 1), {}, {batch, 1, 100, false, 1}, spy);
    EXPECT_EQ(spy.calls, std::set<int64_t>{batch});
  }
  // One replica over expert sets (ep = 2): every slot of the step reaches the call, half of them
  // this set's, and those pick the kernels: 64 tokens x top-8 / 2 = 256 slots, 32 tokens' worth.
  {
    const CallTokenSpy spy(hardware_preset("h200"));
    step_cost(plan_geometry(c, Plan{1, 2, 1, 2}, 2), {}, {64, 1, 100, false, 1}, spy);
    EXPECT_EQ(spy.calls, std::set<int64_t>{32});
  }
  // Several replicas: the received dispatch entries (the fixed capacity: ranks x 4 tokens x
  // min(top-8, experts a set)), of which the call is told to expect what uniform routing gives,
  // ranks x 4 tokens x top-8 / ranks, and that picks the kernels (Ops::moe_experts).
  for (int ranks : {2, 16, 64}) {
    const CallTokenSpy spy(hardware_preset("h200"));
    step_cost(plan_geometry(c, Plan{1, 1, ranks, ranks}, ranks), {}, {4, 1, 100, false, 1}, spy);
    EXPECT_EQ(spy.calls, std::set<int64_t>{4 * 8}) << ranks << " ranks";
    EXPECT_EQ(expert_call_planned_tokens(ranks * 4 * std::min<int64_t>(8, 64 / ranks), 4 * 8, 1), 4 * 8);
  }
  // Fewer expected than the GEMV cutoff: the tiles still (padding does not bound an expert's rows).
  EXPECT_EQ(expert_call_planned_tokens(64, 3, 1), kExpertGemvMaxTokens + 1);
  EXPECT_EQ(expert_call_planned_tokens(6, 3, 1), 6);
  EXPECT_EQ(expert_call_planned_tokens(64, -1, 1), 64);
  EXPECT_EQ(expert_call_planned_tokens(64, 17, 4), 9);
}

// An eager decode step on a backend that enqueues (assumption 2): the host launches each op one
// gap after the last while the device runs the earlier ones. With launches far slower than the
// kernels the step is the launches (plus the last kernel); with launches far faster, the kernels
// and a graph node's gap before each (the device's own latency). Where each op runs on the host
// (launches_overlap false: the CPU) the gaps add up as before. An emulated rank's stand-in copies
// join the same pipeline.
// A pipeline's micro-batches (Plan::mb, assumption 6): more of them shorten the fill and drain,
// and each reads its stage's weights again, so a decode step's compute grows with them.
TEST(Predictor, MoreMicroBatchesShortenThePipelineButReadTheWeightsAgain) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const RooflineCostModel cost(hardware_preset("h200"));
  const PlanGeometry g = plan_geometry(c, Plan{4, 1, 1, 1}, 4);
  StepCost previous;
  for (int m : {1, 4, 8}) {
    SCOPED_TRACE("mb=" + std::to_string(m));
    const StepCost step = step_cost(g, {}, {64, 1, 528, false, m, /*recordable=*/false, true, 2, true}, cost);
    if (m > 1) {
      EXPECT_LT(step.bubble_s, previous.bubble_s);
      EXPECT_GT(step.compute_s, previous.compute_s);
    }
    previous = step;
  }
  // With one micro-batch the stages run one after another: the busiest waits for the other three.
  const StepCost one = step_cost(g, {}, {64, 1, 528, false, 1, false, true, 2, true}, cost);
  EXPECT_GT(one.bubble_s + one.pipeline_comm_s, 2 * (one.compute_s + one.kernel_overhead_s));

  // predict_plan prices the plan's own count; predict_plans ranks 1, pp and 2 pp.
  Workload w = small_workload();
  const PlanPrediction p = predict_plan(c, Plan{4, 1, 1, 1, 1}, w, cluster_of(4, 4), cost, {});
  EXPECT_EQ(p.micro_batches, 1);
  EXPECT_EQ(p.decode_shape.micro_batches, 1);
  EXPECT_EQ(p.prefill_shape.micro_batches, 1);
  EXPECT_EQ(micro_batch_choices(4, 0), (std::vector<int>{1, 4, 8}));
  EXPECT_EQ(micro_batch_choices(1, 0), (std::vector<int>{1}));
  EXPECT_EQ(micro_batch_choices(4, 6), (std::vector<int>{6}));
  PredictorOptions fixed;
  fixed.micro_batches = 6;
  for (const PlanPrediction& q : predict_plans(c, w, cluster_of(4, 4), cost, fixed))
    EXPECT_EQ(q.plan.micro_batch_count(), q.plan.pp == 1 ? 1 : 6) << q.plan.to_string();
  fixed.micro_batches = kMaxMicroBatches + 1;
  EXPECT_NE(test::error_of([&] { predict_plans(c, w, cluster_of(4, 4), cost, fixed); }).find("--micro-batches"),
            std::string::npos);
}

// The roofline's prices read as a profile's would: centred, not floors (a profile without the
// file), so that a step composes as the estimate from measurements does.
class CentredRoofline : public RooflineCostModel {
 public:
  using RooflineCostModel::RooflineCostModel;
  bool prices_floors() const override { return false; }
};

// One wording of a device's sharing for the plan's cluster line, --plan auto's log and the
// sharing term's note: nothing for a device of its own, three significant digits otherwise.
TEST(Predictor, DescribesRanksSharingADevice) {
  EXPECT_EQ(describe_device_sharing(1), "");
  EXPECT_EQ(describe_device_sharing(0.5), "");
  EXPECT_EQ(describe_device_sharing(2), "2 ranks a device");
  EXPECT_EQ(describe_device_sharing(4.0 / 3.0), "1.33 ranks a device");
}

// Ranks sharing a device (assumption 15): in lockstep (a profile's estimate) the others' kernels
// add (s - 1) x compute to a step, less the bubble where the device would otherwise idle; priced
// by floors (the ceiling, a roofline estimate) a step takes max(its own time, s x compute). An
// emulated rank has its device to itself.
TEST(Predictor, RanksSharingADeviceTakeTurnsOnIt) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const RooflineCostModel floors(hardware_preset("h200"));
  const CentredRoofline centred(hardware_preset("h200"));
  ASSERT_TRUE(floors.prices_floors());
  const auto shape = [](int micro_batches, double s) {
    StepShape x{64, 1, 528, false, micro_batches, false, true, 2, false};
    x.ranks_per_device = s;
    return x;
  };
  // The same shape priced by measurements (lockstep) or by floors.
  const auto priced = [&](const PlanGeometry& g, int micro_batches, double s, bool floor) {
    return step_cost(g, {}, shape(micro_batches, s), floor ? static_cast<const CostModel&>(floors) : centred);
  };
  const PlanGeometry tp = plan_geometry(c, Plan{1, 2, 1, 1}, 2);
  const StepCost alone = priced(tp, 1, 1, false);
  EXPECT_EQ(alone.sharing_s, 0);
  EXPECT_EQ(priced(tp, 1, 1, true).sharing_s, 0);
  for (double s : {1.5, 2.0, 3.0, 8.0}) {
    SCOPED_TRACE("ranks per device " + std::to_string(s));
    const StepCost lockstep = priced(tp, 1, s, false);
    EXPECT_NEAR(lockstep.sharing_s, (s - 1) * alone.compute_s, 1e-15);
    EXPECT_NEAR(lockstep.total_s(), alone.total_s() + (s - 1) * alone.compute_s, 1e-12);
    EXPECT_DOUBLE_EQ(lockstep.emulated_rank_s(), alone.emulated_rank_s());
    const StepCost floor = priced(tp, 1, s, true);
    EXPECT_NEAR(floor.total_s(), std::max(alone.total_s(), s * alone.compute_s), 1e-12);
    EXPECT_LE(floor.total_s(), lockstep.total_s());
  }
  // Two stages, one micro-batch: they run one after the other, so the other stage's kernels fall
  // in this one's bubble and add only what the bubble cannot hold.
  const PlanGeometry pp = plan_geometry(c, Plan{2, 1, 1, 1}, 2);
  const StepCost piped = priced(pp, 1, 1, false);
  ASSERT_GT(piped.bubble_s, 0.5 * piped.compute_s);
  const StepCost piped_shared = priced(pp, 1, 2, false);
  EXPECT_NEAR(piped_shared.sharing_s, std::max(0.0, piped.compute_s - piped.bubble_s), 1e-15);
  EXPECT_EQ(priced(pp, 1, 2, true).sharing_s, 0);

  // Through predict_plan, a centred estimate with a ceiling of floors: never faster, for every
  // plan; the estimate in lockstep, the ceiling below it obeying s x compute; a count below 1 is
  // refused naming the option.
  const CostModel& cost = centred;
  Workload w = small_workload();
  Cluster one = cluster_of(4, 4), four = cluster_of(4, 4);
  four.ranks_per_device = 4;
  PredictorOptions options;
  options.ceiling = &floors;
  for (const Plan& plan : {Plan{1, 4, 1, 1}, Plan{2, 2, 1, 1}, Plan{1, 1, 4, 4}, Plan{4, 1, 1, 1}}) {
    const PlanPrediction a = predict_plan(c, plan, w, one, cost, options);
    const PlanPrediction b = predict_plan(c, plan, w, four, cost, options);
    SCOPED_TRACE(plan.to_string());
    EXPECT_EQ(b.decode_shape.ranks_per_device, 4);
    EXPECT_EQ(b.prefill_shape.ranks_per_device, 4);
    // The estimate in lockstep (was: its shape not marked as the floor's).
    EXPECT_NEAR(b.decode.sharing_s, std::max(0.0, 3 * b.decode.compute_s - b.decode.bubble_s), 1e-15);
    EXPECT_GE(b.decode.total_s(), a.decode.total_s());
    EXPECT_LE(b.output_tokens_per_s, a.output_tokens_per_s);
    EXPECT_LE(b.ceiling.decode.total_s(), b.decode.total_s() * (1 + 1e-12));
    EXPECT_GE(b.ceiling.decode.total_s(), 4 * b.ceiling.decode.compute_s * (1 - 1e-12));
    EXPECT_GE(b.ceiling.prefill.total_s(), 4 * b.ceiling.prefill.compute_s * (1 - 1e-12));
  }
  four.ranks_per_device = 0.5;
  EXPECT_NE(test::error_of([&] { predict_plans(c, w, four, cost, {}); }).find("--ranks-per-device"),
            std::string::npos);
}

TEST(Predictor, PricesAnEagerDecodeAsLaunchesOverlappingKernels) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  for (const Plan& plan : {Plan{}, Plan{1, 1, 4, 4}, Plan{2, 2, 1, 1}}) {
    const int ranks = plan.pp * plan.tp * plan.dp;
    for (const double gap : {1e-3, 1e-9}) {
      SCOPED_TRACE(plan.to_string() + ", launch gap " + std::to_string(gap));
      HardwareFigures f = hardware_preset("h200");
      f.launch_s = gap;
      const RooflineCostModel cost(f);
      StepShape shape{8, 1, 100, false, 1, /*recordable=*/false, true, 2};
      const StepCost summed = step_cost(plan_geometry(c, plan, ranks), {}, shape, cost);
      shape.launches_overlap = true;
      const StepCost piped = step_cost(plan_geometry(c, plan, ranks), {}, shape, cost);
      const double launches = summed.kernel_overhead_s / gap;  // the sum: one gap a launch
      EXPECT_NEAR(launches, std::round(launches), 1e-6);
      EXPECT_DOUBLE_EQ(piped.compute_s, summed.compute_s);
      const double busy = piped.compute_s + piped.kernel_overhead_s, node = f.graph_node_s;
      EXPECT_GE(busy, std::max(launches * gap, summed.compute_s + launches * node) - 1e-12);
      EXPECT_LE(busy, summed.compute_s + launches * std::max(gap, node) + 1e-12);
      if (gap > 1e-6) {
        EXPECT_LE(busy, launches * gap + summed.compute_s / launches * 50);  // + a last kernel
      } else {
        EXPECT_NEAR(piped.kernel_overhead_s, launches * node, gap + 1e-12);  // the device's gaps only
      }
      // The emulated copies: never negative, never more than each at its own time and the larger
      // of the two gaps (the sum prices each at its time and a launch gap).
      EXPECT_GE(piped.emulation_s, 0);
      EXPECT_LE(piped.emulation_s, summed.emulation_s * std::max(1.0, node / gap) + 1e-12);
      if (plan.dp > 1 || plan.tp > 1) {
        EXPECT_GT(piped.emulation_s, 0);
      }
      // Everything else is priced as before.
      EXPECT_DOUBLE_EQ(piped.tp_comm_s + piped.expert_comm_s + piped.host_s,
                       summed.tp_comm_s + summed.expert_comm_s + summed.host_s);
    }
  }
}

// The roofline with a measured host cost a call of each op family (a profile's launch_cost).
class LaunchCosts : public RooflineCostModel {
 public:
  LaunchCosts(const HardwareFigures& f, std::map<LaunchFamily, double> costs)
      : RooflineCostModel(f), costs_(std::move(costs)) {}
  double launch_s(LaunchFamily family) const override {
    const auto it = costs_.find(family);
    return it == costs_.end() ? RooflineCostModel::launch_s(family) : it->second;
  }

 private:
  std::map<LaunchFamily, double> costs_;
};

// An eager pipelined decode step prices each op's launch at its family's host cost a call, never
// below an eager gap a kernel: with the families at the gap the step is priced as before; with a
// GEMM call costing 1 ms the host sets the pace, and the step takes at least its GEMM calls' host
// time (OLMoE: q/k/v, o and the router a layer, the LM head); an expert call costing less than its
// two kernels' gaps still pays the gaps. Recorded and CPU-style steps do not change.
TEST(Predictor, PricesEachOpFamilysHostCostInTheLaunchPipeline) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  HardwareFigures f = hardware_preset("h200");
  f.launch_s = 4e-6;
  const RooflineCostModel base(f);
  const LaunchCosts at_gap(f, {{LaunchFamily::kGemm, 4e-6}, {LaunchFamily::kExperts, 4e-6}, {LaunchFamily::kCopy, 4e-6}});
  const LaunchCosts slow_gemm(f, {{LaunchFamily::kGemm, 1e-3}});
  const LaunchCosts cheap_experts(f, {{LaunchFamily::kExperts, 1e-9}});
  for (const Plan& plan : {Plan{2, 1, 1, 1}, Plan{2, 2, 2, 2}}) {
    SCOPED_TRACE(plan.to_string());
    const PlanGeometry g = plan_geometry(c, plan, plan.pp * plan.tp * plan.dp);
    StepShape eager{8, 1, 100, false, 2, /*recordable=*/false, true, 2};
    eager.launches_overlap = true;
    const StepCost before = step_cost(g, {}, eager, base);
    const StepCost same = step_cost(g, {}, eager, at_gap);
    EXPECT_DOUBLE_EQ(same.kernel_overhead_s, before.kernel_overhead_s);
    EXPECT_DOUBLE_EQ(same.emulation_s, before.emulation_s);
    EXPECT_DOUBLE_EQ(step_cost(g, {}, eager, cheap_experts).kernel_overhead_s, before.kernel_overhead_s);
    const StepCost slow = step_cost(g, {}, eager, slow_gemm);
    const int64_t layers = c.num_layers / plan.pp;  // the busiest stage's: the last holds the LM head
    const double gemm_calls = 2.0 * (3 * layers + 1);  // two micro-batches
    EXPECT_GE(slow.compute_s + slow.kernel_overhead_s, gemm_calls * 1e-3 - 1e-9);
    EXPECT_DOUBLE_EQ(slow.compute_s, before.compute_s);
    // Not where the device's own gaps or each op's own time set the step.
    StepShape graph = eager;
    graph.recordable = true;
    const PlanGeometry one = plan_geometry(c, Plan{}, 1);
    EXPECT_DOUBLE_EQ(step_cost(one, {}, graph, slow_gemm).kernel_overhead_s, step_cost(one, {}, graph, base).kernel_overhead_s);
    StepShape on_host = eager;
    on_host.launches_overlap = false;
    EXPECT_DOUBLE_EQ(step_cost(g, {}, on_host, slow_gemm).kernel_overhead_s, step_cost(g, {}, on_host, base).kernel_overhead_s);
  }
}

// Ranks sharing a GPU talk MPI through host buffers, which the engine cannot record: their
// decode steps launch eagerly, and the predictor must price each kernel's gap at the launch's
// cost, not a graph node's. Every plan of 2, 4 and 8 ranks, two model shapes.
TEST(Predictor, PricesDecodeEagerWhereTheTransportCannotBeRecorded) {
  HardwareFigures f = hardware_preset("h200");
  f.graph_node_s = 1.3e-6;
  f.launch_s = 7.1e-6;
  const RooflineCostModel cost(f);
  Workload w = small_workload();
  w.requests = 24;
  for (const ModelConfig& c : {preset(Family::Olmoe, "olmoe-1b-7b"), preset(Family::Qwen2Moe, "qwen1.5-moe-a2.7b")}) {
    for (int ranks : {2, 4, 8}) {
      int shared_groups = 0;
      for (const Plan& plan : enumerate_plans(c, ranks)) {
        PredictorOptions o;
        o.backend = "cuda";
        Cluster own = cluster_of(ranks, ranks), shared = own;
        shared.device_groups_through_host = true;
        const PlanPrediction a = predict_plan(c, plan, w, own, cost, o), b = predict_plan(c, plan, w, shared, cost, o);
        SCOPED_TRACE(std::to_string(c.num_experts) + " experts, " + plan.to_string());
        // Prefill is eager and priced as a sum either way.
        EXPECT_DOUBLE_EQ(a.prefill.total_s(), b.prefill.total_s());
        EXPECT_DOUBLE_EQ(a.decode.compute_s, b.decode.compute_s);
        const bool crosses = plan.pp == 1 && (plan.tp > 1 || plan.dp > 1);
        if (!crosses) {
          // Decode with pp > 1 is eager either way: over NCCL its launches overlap the kernels
          // (assumption 2); through host memory every hop waits for the device, a sum of gaps.
          EXPECT_LE(a.decode.kernel_overhead_s, b.decode.kernel_overhead_s + 1e-15);
          continue;
        }
        ++shared_groups;
        // The same kernels, each at the launch's gap instead of the graph node's (summed: every
        // collective through host memory waits for the device, so launches do not run ahead).
        EXPECT_NEAR(b.decode.kernel_overhead_s / a.decode.kernel_overhead_s, f.launch_s / f.graph_node_s, 1e-9);
        EXPECT_GT(b.decode.total_s(), a.decode.total_s());
        EXPECT_LT(b.output_tokens_per_s, a.output_tokens_per_s);
      }
      EXPECT_GT(shared_groups, 0) << ranks << " ranks";
    }
  }
  // The CPU backend never records.
  PredictorOptions cpu;
  cpu.backend = "cpu";
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const PlanPrediction on_cpu = predict_plan(c, Plan{}, w, cluster_of(1, 1), cost, cpu);
  EXPECT_NEAR(on_cpu.decode.kernel_overhead_s / predict_plan(c, Plan{}, w, cluster_of(1, 1), cost, {}).decode.kernel_overhead_s,
              f.launch_s / f.graph_node_s, 1e-9);
}

// The sizes the predictor asks of collectives and memory-bound kernels.
class BytesSpy : public RooflineCostModel {
 public:
  using RooflineCostModel::RooflineCostModel;
  double allreduce_s(int64_t bytes, int ranks, LinkScope scope) const override {
    allreduce.insert(bytes);
    return RooflineCostModel::allreduce_s(bytes, ranks, scope);
  }
  double alltoall_s(int64_t bytes, int ranks, LinkScope scope) const override {
    alltoall.insert(bytes);
    return RooflineCostModel::alltoall_s(bytes, ranks, scope);
  }
  double send_recv_s(int64_t bytes, LinkScope scope) const override {
    send_recv.insert(bytes);
    return RooflineCostModel::send_recv_s(bytes, scope);
  }
  double memory_bound_s(int64_t bytes) const override {
    memory.insert(bytes);
    return RooflineCostModel::memory_bound_s(bytes);
  }
  mutable std::set<int64_t> allreduce, alltoall, send_recv, memory;
};

// The CPU backend keeps and sends activations in f32 (CpuOps::activation_dtype), CUDA in bf16,
// and a profile's collective and memory-bound sizes are in that element: a CPU step's hidden
// rows are 4 bytes an element, so its tp all-reduces, expert all-to-alls, stage hops and
// memory-bound kernels cost what twice the bf16 bytes cost, never less.
TEST(Predictor, PricesActivationsInTheBackendsElementSize) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const int64_t H = c.hidden_size, batch = 4;
  Workload w = small_workload();
  for (const Plan& plan : {Plan{1, 2, 1, 1}, Plan{2, 1, 1, 1}, Plan{1, 1, 2, 2}}) {
    SCOPED_TRACE(plan.to_string());
    std::map<std::string, PlanPrediction> by_backend;
    for (const std::string backend : {"cpu", "cuda"}) {
      const BytesSpy spy(hardware_preset("cpu"));
      PredictorOptions o;
      o.backend = backend;
      by_backend[backend] = predict_plan(c, plan, w, cluster_of(plan.world_size(), plan.world_size()), spy, o);
      const int64_t element = backend == "cpu" ? 4 : 2;
      spy.allreduce.clear(), spy.alltoall.clear(), spy.send_recv.clear(), spy.memory.clear();
      step_cost(plan_geometry(c, plan, plan.world_size()), {},
                StepShape{batch, 1, 100, false, plan.pp, false, backend != "cpu", element}, spy);
      // One micro-batch a stage: batch / pp rows of H elements.
      const int64_t rows = batch / plan.pp;
      EXPECT_TRUE(spy.memory.count(4 * batch * H * element) || spy.memory.count(4 * rows * H * element))
          << backend << ": no add_rmsnorm of " << element << "-byte elements";
      if (plan.tp > 1) {
        EXPECT_TRUE(spy.allreduce.count(batch * H * element)) << backend;
      }
      if (plan.pp > 1) {
        EXPECT_TRUE(spy.send_recv.count(rows * H * element)) << backend;
      }
    }
    // Predicted through the backend, the same cost model: the CPU's messages cost more.
    const PlanPrediction &cpu = by_backend["cpu"], &cuda = by_backend["cuda"];
    if (plan.tp > 1) {
      EXPECT_GT(cpu.decode.tp_comm_s, cuda.decode.tp_comm_s);
    }
    if (plan.ep > 1) {
      EXPECT_GT(cpu.decode.expert_comm_s, cuda.decode.expert_comm_s);
    }
    if (plan.pp > 1) {
      EXPECT_GE(cpu.decode.pipeline_comm_s, cuda.decode.pipeline_comm_s);
    }
  }
}

// decode_recordable is can_record_decode for the transports a plan's groups get: "self" for a
// group of one, the binding's transport (nccl, or mpi when ranks share a GPU) otherwise.
TEST(Predictor, DecodeRecordableAgreesWithTheEngine) {
  for (int pp : {1, 2, 3})
    for (int tp : {1, 2, 4})
      for (int dp : {1, 2, 3, 8})
        for (bool shared : {false, true})
          for (const std::string backend : {"cuda", "cpu"}) {
            Plan plan{pp, tp, dp, 1};
            const std::string transport = backend == "cpu" ? "" : shared ? "mpi" : "nccl";
            const std::string tp_transport = tp > 1 ? transport : "self";
            const std::string stage_transport = dp > 1 ? (tp * dp > 1 ? transport : "self") : "";
            EXPECT_EQ(decode_recordable(plan, backend, shared),
                      can_record_decode(false, backend == "cuda", pp, tp_transport, stage_transport, nullptr))
                << plan.to_string() << " " << backend << (shared ? " shared" : "");
          }
}

// The roofline, recording how each expert call was priced.
// A model that prices attention_inputs and sampling apart from memory-bound kernels.
class CompositeOpsCost : public RooflineCostModel {
 public:
  using RooflineCostModel::RooflineCostModel;
  double attention_inputs_s(int64_t rows, int64_t, int64_t, int64_t, int64_t bytes) const override {
    inputs_rows.insert(rows);
    return memory_bound_s(bytes) + 1e-3;
  }
  double sampling_s(int64_t rows, int64_t vocab, int64_t bytes) const override {
    sampled.insert({rows, vocab});
    return memory_bound_s(bytes) + 1e-2;
  }
  mutable std::set<int64_t> inputs_rows;
  mutable std::set<std::pair<int64_t, int64_t>> sampled;
};

// The step prices attention_inputs once a layer and sampling once a step through their own
// CostModel calls (the CPU runs each as several ops: pricing them as one memory-bound kernel
// left most of their time out of the CPU's decode step).
TEST(Predictor, PricesAttentionInputsAndSamplingThroughTheirOwnCalls) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const RooflineCostModel plain(hardware_preset("cpu"));
  const CompositeOpsCost composite(hardware_preset("cpu"));
  const StepShape decode{4, 1, 100, false, 1, false, false, 4};
  const StepCost a = step_cost(plan_geometry(c, Plan{}, 1), {}, decode, plain);
  const StepCost b = step_cost(plan_geometry(c, Plan{}, 1), {}, decode, composite);
  EXPECT_NEAR(b.compute_s - a.compute_s, c.num_layers * 1e-3 + 1e-2, 1e-9);
  EXPECT_EQ(composite.inputs_rows, std::set<int64_t>{4});
  EXPECT_EQ(composite.sampled, (std::set<std::pair<int64_t, int64_t>>{{4, c.vocab_size}}));
  // Prefill: the prompt's tokens through attention_inputs, one row a sequence sampled.
  composite.inputs_rows.clear(), composite.sampled.clear();
  step_cost(plan_geometry(c, Plan{}, 1), {}, {2, 64, 64, true, 1, false, false, 4}, composite);
  EXPECT_EQ(composite.inputs_rows, std::set<int64_t>{128});
  EXPECT_EQ(composite.sampled, (std::set<std::pair<int64_t, int64_t>>{{2, c.vocab_size}}));
}

// A model that prices the host's bookkeeping of a forward, recording what it was asked.
class HostStepSpy : public RooflineCostModel {
 public:
  using RooflineCostModel::RooflineCostModel;
  double host_step_s(int64_t tokens, int64_t layers, int64_t experts, int64_t top_k) const override {
    asked.insert({tokens, layers, experts, top_k});
    return 1e-4 * static_cast<double>(tokens) + 1e-5 * static_cast<double>(layers);
  }
  mutable std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>> asked;
};

// The engine resets its scratch, builds and uploads the batch layout and counts the routing once
// a micro-batch on every stage (engine.cpp's run_micro_batch): the step prices it there, in
// host_s, and each stage with its own layers; the roofline prices it at zero, as before.
TEST(Predictor, PricesTheHostStepOnceAMicroBatchOnEachStage) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");  // 16 layers, 64 experts, top-8
  const RooflineCostModel plain(hardware_preset("cpu"));
  const HostStepSpy spy(hardware_preset("cpu"));
  const StepShape decode{4, 1, 100, false, 1, false, false, 4};
  const StepCost a = step_cost(plan_geometry(c, Plan{}, 1), {}, decode, plain);
  const StepCost b = step_cost(plan_geometry(c, Plan{}, 1), {}, decode, spy);
  EXPECT_EQ(a.host_s, 0);
  EXPECT_NEAR(b.host_s, 4e-4 + 16e-5, 1e-15);
  EXPECT_NEAR(b.total_s() - a.total_s(), b.host_s, 1e-15);
  EXPECT_EQ(spy.asked, (std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>>{{4, 16, 64, 8}}));
  // Prefill: every token of the prompts.
  spy.asked.clear();
  step_cost(plan_geometry(c, Plan{}, 1), {}, {2, 64, 64, true, 1, false, false, 4}, spy);
  EXPECT_EQ(spy.asked, (std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>>{{128, 16, 64, 8}}));
  // pp = 2, two micro-batches of 2: each stage (8 layers) does it twice.
  spy.asked.clear();
  const StepCost pp = step_cost(plan_geometry(c, Plan{2, 1, 1, 1}, 2), {}, {4, 1, 100, false, 2, false, false, 4}, spy);
  EXPECT_EQ(spy.asked, (std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>>{{2, 8, 64, 8}}));
  EXPECT_NEAR(pp.host_s, 2 * (2e-4 + 8e-5), 1e-15);
}

// From a profile: the step's price rises by exactly the host_step table's interpolated value, and
// a profile without the table (made before it was measured) prices the step as before.
TEST(Predictor, AProfilesHostStepTableAddsItsValueToTheStep) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const RooflineCostModel roofline(hardware_preset("cpu"));
  HardwareProfile p;
  const ProfileCostModel before(p, roofline);
  p.table(tables::kHostStep).add({64, 8, 16}, 1, {5e-6, 5e-6, 5e-6});
  p.table(tables::kHostStep).add({64, 8, 16}, 16, {2e-5, 2e-5, 2e-5});
  const ProfileCostModel after(p, roofline);
  const StepShape decode{4, 1, 100, false, 1, false, false, 4};
  const StepCost a = step_cost(plan_geometry(c, Plan{}, 1), {}, decode, before);
  const StepCost b = step_cost(plan_geometry(c, Plan{}, 1), {}, decode, after);
  const StepCost r = step_cost(plan_geometry(c, Plan{}, 1), {}, decode, roofline);
  EXPECT_DOUBLE_EQ(a.total_s(), r.total_s());
  const double at4 = 1e-5;  // log-log between (1 token, 5 us) and (16, 20 us)
  EXPECT_NEAR(after.host_step_s(4, 16, 64, 8), at4, 1e-15);
  EXPECT_NEAR(b.total_s() - a.total_s(), at4, 1e-15);
  EXPECT_NEAR(b.host_s, at4, 1e-15);
}

class ExpertCallSpy : public RooflineCostModel {
 public:
  using RooflineCostModel::RooflineCostModel;
  struct Call {
    int64_t per_expert, experts, tokens;
    bool by_gemms;
  };
  double grouped_gemm_s(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k, int64_t call_tokens,
                        bool by_gemms = false) const override {
    calls.push_back({tokens_per_expert, experts, call_tokens, by_gemms});
    return RooflineCostModel::grouped_gemm_s(tokens_per_expert, experts, n, k, call_tokens, by_gemms);
  }
  mutable std::vector<Call> calls;
};

// Prefill-sized calls run one GEMM per expert on its exact rows (expert_call_by_gemms): priced on
// that path at the mean rows an expert, at awkward prompt lengths either side of the switch.
TEST(Predictor, PricesPerExpertGemmsAtTheirMeanRows) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");  // 64 experts, top-8
  for (int64_t T : {1000, 1024, 1500, 2047, 2048, 2049, 3001, 4095, 5000, 7777}) {
    const ExpertCallSpy spy(hardware_preset("h200"));
    step_cost(plan_geometry(c, Plan{}, 1), {}, {1, T, T, true, 1}, spy);
    ASSERT_FALSE(spy.calls.empty());
    // 8 T slots copied into expert order (more than 8,192) and 8 T / 64 >= 256 rows an expert,
    // where OLMoE's experts (3.2 GFLOP) reach kExpertGemmHostBoundFlops (expert_call_by_gemms).
    const bool by_gemms = T >= 2048;
    for (const auto& call : spy.calls) {
      EXPECT_EQ(call.by_gemms, by_gemms) << T;
      EXPECT_EQ(call.tokens, T);
      EXPECT_EQ(call.experts, 64);  // every expert is active at these lengths
      EXPECT_EQ(call.per_expert, std::llround(T * 8.0 / 64)) << T;
    }
  }
  // Decode replays graphs, which cannot sync with the host: tiles, however large the batch; the
  // same batch decoded eagerly (pp = 2) takes the GEMMs.
  const ExpertCallSpy graph(hardware_preset("h200")), eager(hardware_preset("h200"));
  step_cost(plan_geometry(c, Plan{}, 1), {}, {3000, 1, 100, false, 1}, graph);
  step_cost(plan_geometry(c, Plan{2, 1, 1, 1}, 2), {}, {3000, 1, 100, false, 1}, eager);
  for (const auto& call : graph.calls) EXPECT_FALSE(call.by_gemms);
  for (const auto& call : eager.calls) EXPECT_TRUE(call.by_gemms);
  // Under a profile's own rule (its kernels): the Hopper default gives cuBLAS only the eager calls
  // of experts of 10 GFLOP (OLMoE's 375 rows an expert: 4.7 GFLOP stay on the grouped kernel;
  // Mixtral's at 128 rows: 45 GFLOP go to cuBLAS), never a recorded one; wgmma alone, none.
  struct RuledSpy : ExpertCallSpy {
    RuledSpy(const HardwareFigures& h, ExpertGemmRule r) : ExpertCallSpy(h), rule(r) {}
    ExpertGemmRule expert_gemm_rule() const override { return rule; }
    ExpertGemmRule rule;
  };
  const ModelConfig mixtral = preset(Family::Mixtral, "mixtral-8x7b");  // 8 experts, top-2
  for (const ExpertGemmRule rule : {ExpertGemmRule::kHopperCublas, ExpertGemmRule::kNone}) {
    const RuledSpy olmoe_eager(hardware_preset("h200"), rule), mixtral_eager(hardware_preset("h200"), rule),
        mixtral_graph(hardware_preset("h200"), rule);
    step_cost(plan_geometry(c, Plan{2, 1, 1, 1}, 2), {}, {3000, 1, 100, false, 1}, olmoe_eager);
    step_cost(plan_geometry(mixtral, Plan{}, 1), {}, {1, 512, 512, true, 1}, mixtral_eager);
    step_cost(plan_geometry(mixtral, Plan{}, 1), {}, {512, 1, 100, false, 1}, mixtral_graph);
    for (const RuledSpy* spy : {&olmoe_eager, &mixtral_eager, &mixtral_graph}) ASSERT_FALSE(spy->calls.empty());
    for (const auto& call : olmoe_eager.calls) EXPECT_FALSE(call.by_gemms);
    for (const auto& call : mixtral_eager.calls) EXPECT_EQ(call.by_gemms, rule == ExpertGemmRule::kHopperCublas);
    for (const auto& call : mixtral_graph.calls) EXPECT_FALSE(call.by_gemms);
  }
  // A backend without the GEMM path (the CPU's): the tiles' pricing, at the same mean rows.
  const ExpertCallSpy cpu(hardware_preset("h200"));
  StepShape on_cpu{1, 3001, 3001, true, 1};
  on_cpu.expert_gemms = false;
  step_cost(plan_geometry(c, Plan{}, 1), {}, on_cpu, cpu);
  for (const auto& call : cpu.calls) {
    EXPECT_FALSE(call.by_gemms);
    EXPECT_EQ(call.per_expert, std::llround(3001 * 8.0 / 64));
  }
}

TEST(Predictor, RefusesOnCudaPlansWhoseExpertSlicesItsKernelsCannotRun) {
  const ModelConfig c = preset(Family::Qwen2Moe, "qwen1.5-moe-a2.7b");  // expert columns 1408
  EXPECT_EQ(cuda_plan_problem(Plan{1, 16, 1, 1}, c), "");               // 88 columns a rank
  const std::string problem = cuda_plan_problem(Plan{2, 16, 2, 1}, c);  // 1408 / 32 = 44
  EXPECT_NE(problem.find("44 columns"), std::string::npos) << problem;
  EXPECT_NE(problem.find("multiple of 8"), std::string::npos) << problem;
  EXPECT_EQ(cuda_plan_problem(Plan{2, 16, 2, 2}, c), "");               // 16 shards: 88 again
  // Ranked for 64 CUDA ranks, that plan is refused with the reason; on the CPU it may run.
  const HardwareFigures f = hardware_preset("h200");
  const Cluster cluster{64, 8, f.memory_bytes, f.reserved_bytes};
  PredictorOptions cuda, cpu;
  cuda.backend = "cuda";
  cpu.backend = "cpu";
  auto find = [](const std::vector<PlanPrediction>& ranking, const Plan& plan) {
    return *std::find_if(ranking.begin(), ranking.end(), [&](const PlanPrediction& p) { return key(p.plan) == key(plan); });
  };
  const RooflineCostModel cost(f);
  const auto on_cuda = predict_plans(c, Workload{}, cluster, cost, cuda);
  const PlanPrediction refused = find(on_cuda, Plan{2, 16, 2, 1});
  EXPECT_FALSE(refused.fits);
  EXPECT_EQ(refused.refusal, problem);
  for (const PlanPrediction& p : on_cuda) {
    if (p.fits) {
      EXPECT_EQ(cuda_plan_problem(p.plan, c), "") << p.plan.to_string();
    }
  }
  EXPECT_EQ(find(predict_plans(c, Workload{}, cluster, cost, cpu), Plan{2, 16, 2, 1}).refusal.find("multiple of 8"),
            std::string::npos);
  // An awkward size: 1420 columns (4 x 355) are refused at every degree, even undivided.
  ModelConfig awkward = c;
  awkward.moe_intermediate_size = 1420;
  for (const Plan& plan : {Plan{}, Plan{1, 2, 1, 1}, Plan{1, 4, 1, 1}})
    EXPECT_NE(cuda_plan_problem(plan, awkward).find("multiple of 8"), std::string::npos) << plan.to_string();
  awkward.moe_intermediate_size = 1416;  // 8 x 177: whole it runs, halved (708) it does not
  EXPECT_EQ(cuda_plan_problem(Plan{}, awkward), "");
  EXPECT_NE(cuda_plan_problem(Plan{1, 2, 1, 1}, awkward), "");
}

TEST(Predictor, ExplicitCudaPlanWithAnUnrunnableExpertSliceIsRefusedBeforeLoading) {
  const ModelConfig c = preset(Family::Qwen2Moe, "qwen1.5-moe-a2.7b");
  const std::string msg = test::error_of([&] { validate_plan_for_backend(Plan{2, 16, 2, 1}, c, "cuda"); });
  EXPECT_NE(msg.find("--plan pp=2,tp=16,dp=2,ep=1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("44 columns"), std::string::npos) << msg;
  EXPECT_NO_THROW(validate_plan_for_backend(Plan{2, 16, 2, 1}, c, "cpu"));   // the CPU kernels take any width
  EXPECT_NO_THROW(validate_plan_for_backend(Plan{1, 16, 1, 1}, c, "cuda"));  // 88 columns a rank
}

// A skewed routing: the first expert set gets ten times the picks of the others.
std::vector<std::vector<int64_t>> skewed_counts(const ModelConfig& c, int hot_experts) {
  std::vector<std::vector<int64_t>> counts(static_cast<size_t>(c.num_moe_layers()),
                                           std::vector<int64_t>(static_cast<size_t>(c.num_experts), 100));
  for (auto& layer : counts)
    for (int e = 0; e < hot_experts; ++e) layer[static_cast<size_t>(e)] = 1000;
  return counts;
}

TEST(Predictor, SkewedLoadsSlowExpertParallelism) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const RooflineCostModel cost(hardware_preset("h100"));
  const ExpertShares skewed = expert_shares_from_counts(c, skewed_counts(c, 8), "test");
  // Decode reads the same experts' weights either way (a little slower); prefill is compute-bound.
  for (const StepShape shape : {StepShape{64, 1, 600, false, 1}, StepShape{8, 512, 512, true, 1}}) {
    const PlanGeometry ep = plan_geometry(c, Plan{1, 1, 8, 8}, 8);
    const StepCost uniform = step_cost(ep, {}, shape, cost), busy = step_cost(ep, skewed, shape, cost);
    EXPECT_GT(busy.total_s(), uniform.total_s() * (shape.prefill ? 1.5 : 1.01)) << "prefill " << shape.prefill;
    EXPECT_GT(busy.imbalance_s, 0);
    EXPECT_EQ(uniform.imbalance_s, 0);
    // Without expert parallelism every rank holds a slice of every expert: nothing to wait for.
    const PlanGeometry sliced = plan_geometry(c, Plan{1, 8, 1, 1}, 8);
    EXPECT_EQ(step_cost(sliced, skewed, shape, cost).imbalance_s, 0);
  }
  // Loads that do not match the model are refused, naming their source.
  auto counts = skewed_counts(c, 8);
  counts.pop_back();
  const std::string e = test::error_of([&] { expert_shares_from_counts(c, counts, "run.h5"); });
  EXPECT_NE(e.find("run.h5: expert loads for 15 MoE layers, the model has 16"), std::string::npos) << e;
}

TEST(Predictor, ReadsExpertLoadsFromAResultsFile) {
  testing::TempDir dir("predictor-routing");
  ModelConfig c = fixture("olmoe");
  c.layer_is_moe[0] = false;
  const int64_t layers = c.num_layers, experts = c.num_experts;
  std::vector<int64_t> flat(static_cast<size_t>(layers * experts));
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<int64_t>(i);
  const std::string path = dir.file("run.h5");
  {
    h5::File f = h5::File::create(path);
    f.create_group("/experts");
    f.write("/experts/tokens", flat, {layers, experts});
    f.close();
  }
  const auto loads = read_expert_loads(path, c);
  ASSERT_EQ(static_cast<int64_t>(loads.size()), layers - 1);
  EXPECT_EQ(loads[0][0], experts);  // row 1 of the file: row 0 is the dense layer's
  ModelConfig other = c;
  other.num_experts *= 2;
  const std::string e = test::error_of([&] { read_expert_loads(path, other); });
  EXPECT_NE(e.find(path + ": /experts/tokens is not"), std::string::npos) << e;
}

// perf/RESULTS.md: median decode steps measured with CUDA graphs (context about 528) and
// prefill rates. A prediction is an upper bound: never a shorter step or lower rate than these.
TEST(Predictor, NeverSlowerThanTheEngineMeasured) {
  struct Measured {
    Family family;
    const char* preset;
    const char* hardware;
    std::vector<std::pair<int64_t, double>> decode_ms;  // batch, step
    double prefill_tokens_per_s;
  };
  const Measured runs[] = {
      {Family::Olmoe, "olmoe-1b-7b", "h100", {{1, 1.89}, {8, 5.22}, {32, 9.45}, {64, 10.77}, {128, 14.44}, {256, 22.48}}, 85251},
      {Family::Qwen2Moe, "qwen1.5-moe-a2.7b", "h100", {{1, 3.44}, {8, 7.20}, {64, 18.84}, {256, 35.90}}, 61607},
      {Family::Mixtral, "mixtral-8x7b", "h200", {{1, 8.16}, {8, 27.44}, {64, 46.74}, {256, 74.27}}, 7981},
  };
  for (const Measured& m : runs) {
    const ModelConfig c = preset(m.family, m.preset);
    const RooflineCostModel cost(hardware_preset(m.hardware));
    const PlanGeometry g = plan_geometry(c, Plan{}, 1);
    for (const auto& [batch, ms] : m.decode_ms) {
      const double predicted = step_cost(g, {}, {batch, 1, 528, false, 1}, cost).total_s() * 1e3;
      EXPECT_LE(predicted, ms) << m.preset << " batch " << batch;
      EXPECT_GT(predicted, ms / 4) << m.preset << " batch " << batch << ": a floor this low says little";
    }
    const double prefill_s = step_cost(g, {}, {16, 512, 512, true, 1}, cost).total_s();
    EXPECT_GE(16 * 512 / prefill_s, m.prefill_tokens_per_s) << m.preset;
  }
}

TEST(Predictor, RanksA1024GpuClusterQuickly) {
  const ModelConfig c = preset(Family::Qwen3Moe, "qwen3-30b-a3b");
  const HardwareFigures f = hardware_preset("h200");
  const auto start = std::chrono::steady_clock::now();
  const auto ranking = predict_plans(c, Workload{}, {1024, 8, f.memory_bytes, f.reserved_bytes}, RooflineCostModel(f), {});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::set<std::tuple<int, int, int, int>> layouts;
  for (const PlanPrediction& p : ranking) layouts.insert({p.plan.pp, p.plan.tp, p.plan.dp, p.plan.ep});
  EXPECT_EQ(layouts.size(), enumerate_plans(c, 1024).size());
  EXPECT_GT(ranking.size(), layouts.size()) << "pipelines are ranked with several micro-batch counts";
  ASSERT_FALSE(ranking.empty());
  EXPECT_TRUE(ranking[0].fits);
  EXPECT_LT(s, 5.0) << "the target is 1 s (measured in perf/, not here)";
  for (size_t i = 1; i < ranking.size() && ranking[i].fits; ++i)
    EXPECT_GE(ranking[i - 1].output_tokens_per_s, ranking[i].output_tokens_per_s);
}

TEST(Predictor, ArrivalRateSetsTheBatchAndCapsThroughput) {
  const ModelConfig c = preset(Family::Olmoe, "olmoe-1b-7b");
  const HardwareFigures f = hardware_preset("h100");
  const RooflineCostModel cost(f);
  Workload w;
  w.arrival_rate = 10;  // 10 requests/s of 128 tokens: 1,280 tok/s
  const PlanPrediction light = predict_plan(c, Plan{}, w, {1, 1, f.memory_bytes, f.reserved_bytes}, cost, {});
  EXPECT_EQ(light.batch_limit, "arrival rate");
  EXPECT_LT(light.batch, 8);
  EXPECT_DOUBLE_EQ(light.output_tokens_per_s, 1280);
  w.arrival_rate = 0;
  const PlanPrediction batch = predict_plan(c, Plan{}, w, {1, 1, f.memory_bytes, f.reserved_bytes}, cost, {});
  EXPECT_EQ(batch.batch, w.max_batch);
  EXPECT_LT(light.itl_s, batch.itl_s);
}

TEST(Predictor, ExplainsTheWinnerAndWritesEveryPlan) {
  testing::TempDir dir("predictor-out");
  const ModelConfig c = fixture("qwen3_moe");
  const auto ranking = predict_plans(c, small_workload(), cluster_of(4, 4, int64_t{1} << 30),
                                     RooflineCostModel(hardware_preset("cpu")), {});
  ASSERT_GE(ranking.size(), 2u);
  const std::string why = explain_best(ranking);
  EXPECT_EQ(why.find(ranking[0].plan.to_string() + " wins"), 0u) << why;
  EXPECT_NE(why.find(ranking[1].plan.to_string()), std::string::npos) << why;

  const std::string path = dir.file("plans.h5");
  write_predictions(path, ranking, {{"workload", describe(small_workload())}});
  const std::vector<std::string> plans = read_strings(path, "/plans/plan");
  ASSERT_EQ(plans.size(), ranking.size());
  EXPECT_EQ(plans[0], ranking[0].plan.to_string());
  EXPECT_EQ(read_dims(path, "/plans/decode_parts"), (std::vector<int64_t>{static_cast<int64_t>(ranking.size()), 11}));
  EXPECT_EQ(read_float64(path, "/plans/output_tokens_per_s")[0], ranking[0].output_tokens_per_s);
  EXPECT_EQ(read_string_attribute(path, "/", "workload"), describe(small_workload()));
}

TEST(Predictor, WorkloadsFromPromptsAndTheirChecks) {
  std::vector<RequestSpec> requests(3);
  requests[0].prompt_tokens.assign(10, 1);
  requests[1].prompt_tokens.assign(20, 1);
  requests[2].prompt_tokens.assign(30, 1);
  requests[0].max_new_tokens = 4;
  requests[1].max_new_tokens = 8;  // the third takes the base's 12
  Workload base;
  base.output_tokens = 12;
  const Workload w = workload_from_requests(requests, base, "p.jsonl");
  EXPECT_EQ(w.requests, 3);
  EXPECT_EQ(w.prompt_tokens, 20);
  EXPECT_EQ(w.output_tokens, 8);
  const std::pair<void (*)(Workload&), const char*> bad[] = {
      {[](Workload& x) { x.prompt_tokens = 0; }, "--prompt-tokens"},
      {[](Workload& x) { x.output_tokens = -1; }, "--output-tokens"},
      {[](Workload& x) { x.requests = 0; }, "--requests"},
      {[](Workload& x) { x.arrival_rate = -2; }, "--arrival-rate"},
      {[](Workload& x) { x.max_batch = 0; }, "--max-batch"},
      {[](Workload& x) { x.max_batch_tokens = 0; }, "--max-batch-tokens"}};
  for (const auto& [spoil, option] : bad) {
    Workload x;
    spoil(x);
    const std::string e = test::error_of([&] { check_workload(x); });
    EXPECT_EQ(e.find(option), 0u) << e;
  }
}

}  // namespace
}  // namespace moetron
