// The memory model of a plan's ranks (parallel/memory_need.hpp): each part counted at the width
// its backend really holds, exact bytes for a config small enough to count by hand, and the
// refusal that names the part that does not fit.
#include <gtest/gtest.h>

#include <string>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/core/error.hpp"
#include "moetron/parallel/memory_need.hpp"
#include "moetron/parallel/plan.hpp"
#include "../common/moe_config.hpp"

namespace moetron {
namespace {

// One layer, hidden 8, 2 q heads over 1 kv head of 4, 2 experts of width 4 (top-1), vocab 16.
ModelConfig hand_config() { return moe_config({16, 8, 1, 2, 1, 4, 4, 2, 1}); }

RunShape hand_run() {
  RunShape run;
  run.kv_tokens = 20;  // one block of 16 and the scratch block: 32 tokens held
  run.block_size = 16;
  run.max_step_tokens = 4;
  run.max_batch = 2;
  return run;
}

MemoryNeed need_of(const ModelConfig& c, const std::string& backend, const RunShape& run) {
  const Plan whole;
  return memory_need(c, whole, layout_for(whole, c, 0).shard, backend_storage(backend), run);
}

MemoryBudget budget(int64_t bytes, const RunShape& run) {
  MemoryBudget b;
  b.bytes_per_rank = bytes;
  b.source = "--memory-per-rank";
  b.storage = backend_storage("cpu");
  b.run = run;
  return b;
}

std::string refusal(const Plan& plan, const ModelConfig& c, const MemoryBudget& b) {
  try {
    validate_plan(plan, c, plan.world_size(), b);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

void expect_has(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "no '" << part << "' in: " << text;
}

constexpr int64_t kSlack = int64_t{64} << 20;  // step_arena_bytes' fixed slack

// Redundant experts: every rank is counted with ceil(R / ep) more experts per MoE layer (the
// most a set gets), its column slice of each, at the backend's width; here one more expert of
// 3 x 8 x 4 parameters as float32 on every rank of dp=2,ep=2. Top-1 sends no more entries.
TEST(MemoryNeed, RedundantExpertsCountTheirWeights) {
  const ModelConfig c = hand_config();
  const Plan plan{1, 1, 2, 2};
  RunShape with = hand_run();
  with.redundant_experts = 2;
  for (int rank = 0; rank < 2; ++rank) {
    const ShardSpec shard = layout_for(plan, c, rank).shard;
    const MemoryNeed base = memory_need(c, plan, shard, backend_storage("cpu"), hand_run());
    const MemoryNeed more = memory_need(c, plan, shard, backend_storage("cpu"), with);
    EXPECT_EQ(more.weights - base.weights, 3 * 8 * 4 * 4);
    EXPECT_EQ(more.activations, base.activations);
    EXPECT_EQ(more.kv_cache, base.kv_cache);
  }
  // A budget that fits without the copies refuses the plan with them.
  const int64_t need = largest_memory_need(plan, c, backend_storage("cpu"), hand_run()).need.total();
  EXPECT_EQ(refusal(plan, c, budget(need, hand_run())), "(accepted)");
  const std::string refused = refusal(plan, c, budget(need, with));
  expect_has(refused, "--plan pp=1,tp=1,dp=2,ep=2");
}

TEST(MemoryNeed, ExactBytesOfATinyConfigCountedByHand) {
  const ModelConfig c = hand_config();
  // Parameters: norms 2*8, q and o 2*8*8, k and v 2*8*4, router 2*8, experts 2*3*8*4 (one
  // layer: 416); embedding 16*8; final norm 8 and LM head 16*8.
  const int64_t params = 416 + 128 + 8 + 128;
  EXPECT_EQ(weight_shard_params(c, layout_for(Plan{}, c, 0).shard), params);

  const MemoryNeed cpu = need_of(c, "cpu", hand_run());
  EXPECT_EQ(cpu.weights, params * 4);
  EXPECT_EQ(cpu.kv_cache, 32 * 2 * 1 * 4 * 4);  // tokens x K,V x kv heads x head_dim x float32
  // Arena: 4 tokens x 110 elements x 4 bytes, plus 2 logits rows of 2*8*4 + 16*(4+4) + (16+16)*4
  // bytes, x1.25, plus the slack; the layer's routing record 4*1*4, expert counts 2*8 and
  // co-activation counts 2*2*8.
  EXPECT_EQ(cpu.activations, (4 * 110 * 4 + 2 * 320) * 5 / 4 + kSlack + 16 + 16 + 32);
  EXPECT_EQ(cpu.total(), cpu.weights + cpu.kv_cache + cpu.activations);

  const MemoryNeed cuda = need_of(c, "cuda", hand_run());
  EXPECT_EQ(cuda.weights, params * 2);
  EXPECT_EQ(cuda.kv_cache, 32 * 2 * 1 * 4 * 2);
  EXPECT_EQ(cuda.activations, (4 * 110 * 2 + 2 * 256) * 5 / 4 + kSlack + 16 + 16 + 32);
}

TEST(MemoryNeed, TheCpuHoldsFloat32WeightsTwiceTheBf16Bytes) {
  const ModelConfig c = hand_config();
  EXPECT_EQ(need_of(c, "cpu", hand_run()).weights, 2 * need_of(c, "cuda", hand_run()).weights);
}

// The table follows what the CPU backend really does with a bf16 weight and its activations.
TEST(MemoryNeed, CpuStorageMatchesCpuOps) {
  std::unique_ptr<Ops> ops = make_cpu_ops();
  const Tensor bf16 = host_tensor(DType::BF16, {2, 2});
  EXPECT_EQ(ops->upload_weight(bf16).dtype, backend_storage("cpu").weights);
  EXPECT_EQ(ops->activation_dtype(), backend_storage("cpu").activations);
  EXPECT_THROW(backend_storage("tpu"), Error);
}

TEST(MemoryNeed, KvCacheAndActivationsGrowWithTheRun) {
  const ModelConfig c = hand_config();
  RunShape run = hand_run();
  const MemoryNeed base = need_of(c, "cpu", run);
  run.kv_tokens = 4096;
  EXPECT_EQ(need_of(c, "cpu", run).kv_cache, (4096 / 16 + 1) * 16 * 2 * 4 * 4);
  run.kv_tokens = 0;
  EXPECT_EQ(need_of(c, "cpu", run).kv_cache, 0);
  run = hand_run();
  run.max_step_tokens = 400;
  EXPECT_GT(need_of(c, "cpu", run).activations, base.activations + 100 * 4 * 110 * 4);
}

TEST(MemoryNeed, TheLargestRankIsTheLastStageWithTheLmHead) {
  ModelConfig c = hand_config();
  c.num_layers = 2;
  c.layer_is_moe.assign(2, true);
  c.vocab_size = 4096;  // the LM head's rows and logits outweigh the embedding
  const RankNeed most = largest_memory_need(Plan{2, 1, 1, 1}, c, backend_storage("cpu"), hand_run());
  EXPECT_EQ(most.rank, 1);
  EXPECT_EQ(most.need.total(), memory_need(c, Plan{2, 1, 1, 1}, layout_for(Plan{2, 1, 1, 1}, c, 1).shard,
                                           backend_storage("cpu"), hand_run())
                                   .total());
}

// bf16 weights fit, float32 do not: the old check (bf16 weights only) accepted this.
TEST(MemoryFit, RefusesWeightsThatFitOnlyAtTheirStoredWidth) {
  const ModelConfig c = hand_config();
  const MemoryNeed need = need_of(c, "cpu", hand_run());
  const std::string msg = refusal(Plan{}, c, budget(need.weights * 3 / 4, hand_run()));
  expect_has(msg, "--plan pp=1,tp=1,dp=1,ep=1: rank 0 needs ");
  expect_has(msg, "weights 2.66 KiB as float32 on the cpu backend, KV cache 1.00 KiB for 20 tokens, activations 64.00 MiB");
  expect_has(msg, "but a rank has 1.99 KiB (--memory-per-rank): the weights alone do not fit");
}

TEST(MemoryFit, RefusesAKvCacheOrActivationsThatDoNotFitBesideTheWeights) {
  const ModelConfig c = hand_config();
  RunShape big_kv = hand_run();
  big_kv.kv_tokens = 1 << 20;
  const MemoryNeed kv = need_of(c, "cpu", big_kv);
  std::string msg = refusal(Plan{}, c, budget(kv.total() - 1, big_kv));
  expect_has(msg, "for 1048576 tokens");
  expect_has(msg, "the KV cache does not fit beside the weights and activations; use a smaller --kv-cache-tokens");

  const MemoryNeed small = need_of(c, "cpu", hand_run());
  msg = refusal(Plan{}, c, budget(small.weights + small.activations - 1, hand_run()));
  expect_has(msg, "the activations do not fit beside the weights; use a smaller --max-batch-tokens");
  EXPECT_EQ(refusal(Plan{}, c, budget(small.total(), hand_run())), "(accepted)");
  EXPECT_EQ(refusal(Plan{}, c, budget(0, big_kv)), "(accepted)");  // memory unknown: not checked
}

}  // namespace
}  // namespace moetron
