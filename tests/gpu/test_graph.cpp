// The decode-step operators record into a CUDA graph (Ops::begin_recording: no host sync, no
// allocation, device-side shapes) and a replay over new inputs gives what an eager run gives.
#include <numeric>

#include "gpu_test_util.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaGraph = GpuVsCpu;

// A MoE layer's routing and experts on x into out, from a fresh set of temporaries.
void route_and_run_experts(CudaOps& ops, const Tensor& x, const Tensor& router_w, int64_t k,
                           const ExpertWeights& experts, Tensor& out) {
  const int64_t tokens = x.rows(), num_experts = router_w.rows();
  Tensor logits = ops.temp(DType::BF16, {tokens, num_experts});
  Tensor ids = ops.temp(DType::I32, {tokens, k});
  Tensor weights = ops.temp(DType::F32, {tokens, k});
  ops.linear(x, router_w, nullptr, logits);
  ops.router_topk(logits, k, true, ids, weights);
  ops.moe_experts(x, ids, weights, experts, out);
}

TEST_F(CudaGraph, MoeAndAttentionStepReplaysLikeEagerRuns) {
  const int64_t T = 16, H = 256, E = 16, K = 4, I = 128, nq = 8, nk = 2, hd = 64, bs = 16;
  const int64_t kv_len = 300, blocks = (kv_len + bs - 1) / bs;
  Pair router_w = random_weight({E, H}, 0.2f);
  Pair gate_up = random_weight({E, 2 * I, H}, 0.06f);
  Pair down = random_weight({E, H, I}, 0.09f);
  ExpertWeights experts{0, E, gate_up.gpu, down.gpu};
  KvCache cache{random_activation({T * blocks, bs, nk, hd}).gpu,
                random_activation({T * blocks, bs, nk, hd}).gpu};
  std::vector<int32_t> tables(T * blocks), qs(T + 1), lens(T, static_cast<int32_t>(kv_len)),
      positions(T, static_cast<int32_t>(kv_len - 1));
  std::iota(tables.begin(), tables.end(), 0);
  std::iota(qs.begin(), qs.end(), 0);
  BatchTensors batch;
  batch.num_tokens = T;
  batch.num_seqs = T;
  batch.max_blocks_per_seq = blocks;
  batch.block_size = bs;
  batch.max_kv_len = kv_len;
  batch.positions = ints(positions, {T}).gpu;
  batch.query_start = ints(qs, {T + 1}).gpu;
  batch.kv_lens = ints(lens, {T}).gpu;
  batch.block_tables = ints(tables, {T, blocks}).gpu;

  Tensor x = gpu().alloc(DType::BF16, {T, H});
  Tensor q = gpu().alloc(DType::BF16, {T, nq * hd});
  Tensor moe_out = gpu().alloc(DType::BF16, {T, H});
  Tensor attn_out = gpu().alloc(DType::BF16, {T, nq * hd});
  auto step = [&] {
    gpu().reset_temps();
    route_and_run_experts(gpu(), x, router_w.gpu, K, experts, moe_out);
    gpu().attention(q, cache, batch, nq, nk, hd, 0.125f, attn_out);
  };
  auto set_inputs = [&] {
    gpu().copy(random_activation({T, H}).gpu, x);
    gpu().copy(random_activation({T, nq * hd}).gpu, q);
  };

  set_inputs();
  ASSERT_TRUE(gpu().can_record());
  gpu().begin_recording();
  step();
  const int recording = gpu().end_recording();

  for (int round = 0; round < 3; ++round) {
    set_inputs();
    step();  // eager, at the same temporary addresses
    const std::vector<float> eager_moe = read(gpu(), moe_out), eager_attn = read(gpu(), attn_out);
    poison(gpu(), moe_out);
    poison(gpu(), attn_out);
    gpu().replay(recording);
    EXPECT_EQ(relative_l2(read(gpu(), moe_out), eager_moe), 0.0) << "round " << round;
    EXPECT_EQ(relative_l2(read(gpu(), attn_out), eager_attn), 0.0) << "round " << round;
  }
}

// Expert calls on the Hopper grouped GEMM record too (no host sync: the tile table and the TMA
// boxes' coordinates come from the device) and replay what they compute eagerly: a prefill-sized
// call (256 rows an expert on average) and a decode batch it takes (64 rows an expert).
TEST_F(CudaGraph, HopperExpertGemmsReplayLikeEagerRuns) {
  if (!kernels::grouped_gemm_sm90_available()) GTEST_SKIP() << "the device cannot run the sm_90a image";
  const int64_t H = 264, E = 8, K = 2, I = 136;
  Pair router_w = random_weight({E, H}, 0.2f);
  ExpertWeights experts{0, E, random_weight({E, 2 * I, H}, 0.06f).gpu, random_weight({E, H, I}, 0.09f).gpu};
  const PrefillExpertPath initial = gpu().prefill_expert_path();
  gpu().set_prefill_expert_path(PrefillExpertPath::kHopper);
  for (const int64_t T : {int64_t{1024}, int64_t{256}}) {
    Tensor x = gpu().alloc(DType::BF16, {T, H});
    Tensor out = gpu().alloc(DType::BF16, {T, H});
    auto step = [&] {
      gpu().reset_temps();
      route_and_run_experts(gpu(), x, router_w.gpu, K, experts, out);
    };
    gpu().copy(random_activation({T, H}).gpu, x);
    gpu().begin_recording();
    step();
    const int recording = gpu().end_recording();
    for (int round = 0; round < 2; ++round) {
      gpu().copy(random_activation({T, H}).gpu, x);
      step();
      const std::vector<float> eager = read(gpu(), out);
      poison(gpu(), out);
      gpu().replay(recording);
      EXPECT_EQ(relative_l2(read(gpu(), out), eager), 0.0) << T << " tokens, round " << round;
    }
  }
  gpu().set_prefill_expert_path(initial);
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
