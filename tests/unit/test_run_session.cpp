// The policies RunSession applies: KV-cache sizing, whether decode steps are recorded, and which
// replica serves which request.
#include <gtest/gtest.h>

#include "moetron/core/error.hpp"
#include "moetron/engine/run_session.hpp"

namespace moetron {
namespace {

RequestSpec request(int prompt_tokens, int64_t max_new) {
  RequestSpec r;
  r.prompt_tokens.assign(static_cast<size_t>(prompt_tokens), 1);
  r.max_new_tokens = max_new;
  return r;
}

TEST(KvCacheSizing, BytesPerTokenCountKAndVOfEveryLayerAndHead) {
  EXPECT_EQ(kv_bytes_per_token(4, 2, 64, DType::BF16), 4 * 2 * 2 * 64 * 2);
  EXPECT_EQ(kv_bytes_per_token(3, 1, 8, DType::F32), 3 * 2 * 1 * 8 * 4);
}

TEST(KvCacheSizing, AnExplicitSizeWins) {
  KvSizing s;
  s.requested_tokens = 1234;
  s.free_bytes = 1 << 30;
  s.bytes_per_token = 100;
  EXPECT_EQ(kv_cache_tokens(s, {request(10, 5)}), 1234);
}

TEST(KvCacheSizing, KnownFreeMemoryGivesItsFraction) {
  KvSizing s;
  s.free_bytes = 1000000;
  s.memory_fraction = 0.5;
  s.bytes_per_token = 1000;
  EXPECT_EQ(kv_cache_tokens(s, {request(10, 5)}), 500);
  s.bytes_per_token = 0;  // a shard without layers needs no cache
  EXPECT_EQ(kv_cache_tokens(s, {}), 0);
}

TEST(KvCacheSizing, UnknownMemoryHoldsEveryRequestAtFullLengthPlusABlock) {
  KvSizing s;
  s.free_bytes = -1;
  s.block_size = 16;
  EXPECT_EQ(kv_cache_tokens(s, {request(10, 5), request(3, 20)}), (10 + 5 + 16) + (3 + 20 + 16));
}

// What the plan's memory check counts: the request, else what the cpu will allocate, else (cuda,
// sized later from free memory) the least a run can go on with: its longest request and a block.
TEST(KvCacheSizing, ThePlanCheckCountsWhatTheRunCannotDoWithout) {
  const std::vector<RequestSpec> requests = {request(10, 5), request(3, 20)};
  EXPECT_EQ(kv_tokens_to_fit(4096, true, 16, requests), 4096);
  EXPECT_EQ(kv_tokens_to_fit(4096, false, 16, requests), 4096);
  KvSizing cpu;
  cpu.block_size = 16;
  EXPECT_EQ(kv_tokens_to_fit(0, false, 16, requests), kv_cache_tokens(cpu, requests));
  EXPECT_EQ(kv_tokens_to_fit(0, true, 16, requests), 3 + 20 + 16);
  EXPECT_EQ(kv_tokens_to_fit(0, true, 16, {}), 16);
}

TEST(StepSize, ALongPromptMakesTheLargestStep) {
  EXPECT_EQ(max_step_tokens(8192, {request(10, 5)}), 8192);
  EXPECT_EQ(max_step_tokens(8, {request(10, 5), request(3, 1)}), 10);
}

TEST(StepSize, TheRunShapeTakesTheSettings) {
  RunSettings s;
  s.max_batch = 3;
  s.max_batch_tokens = 64;
  s.block_size = 4;
  s.kv_cache_tokens = 0;
  const RunShape cpu = run_shape(s, "cpu", {request(10, 5)});
  EXPECT_EQ(cpu.kv_tokens, 10 + 5 + 4);
  EXPECT_EQ(cpu.block_size, 4);
  EXPECT_EQ(cpu.max_step_tokens, 64);
  EXPECT_EQ(cpu.max_batch, 3);
  EXPECT_EQ(run_shape(s, "cuda", {request(10, 5), request(1, 1)}).kv_tokens, 10 + 5 + 4);
}

TEST(DecodeRecording, RecordsOnlyWhereNothingWaitsForTheHost) {
  std::string why;
  EXPECT_TRUE(can_record_decode(false, true, 1, "self", "", &why));
  EXPECT_EQ(why, "");
  EXPECT_TRUE(can_record_decode(false, true, 1, "nccl", "nccl", &why));
  EXPECT_FALSE(can_record_decode(true, true, 1, "self", "", &why));
  EXPECT_EQ(why, "--no-graphs");
  EXPECT_FALSE(can_record_decode(false, false, 1, "self", "", &why));
  EXPECT_EQ(why, "the backend cannot record");
  EXPECT_FALSE(can_record_decode(false, true, 2, "self", "", &why));
  EXPECT_NE(why.find("pipeline"), std::string::npos);
  EXPECT_FALSE(can_record_decode(false, true, 1, "mpi", "", &why));
  EXPECT_NE(why.find("tp group's mpi"), std::string::npos) << why;
  EXPECT_FALSE(can_record_decode(false, true, 1, "nccl", "mpi", &why));
  EXPECT_NE(why.find("dispatch's mpi"), std::string::npos) << why;
}

TEST(RequestAssignment, EveryDpThRequestInFileOrderWithDefaultsFilledIn) {
  std::vector<RequestSpec> specs;
  for (int i = 0; i < 5; ++i) specs.push_back(request(i + 1, 4));
  specs[3].temperature = 0.7f;
  specs[3].seed = 99;
  specs[3].ignore_eos = true;
  RequestDefaults d;
  d.sampling.temperature = 0.0f;
  d.sampling.top_k = 5;
  d.sampling.top_p = 0.9f;
  d.sampling.seed = 1000;
  const std::vector<Sequence> second = requests_for_replica(specs, 2, 1, d);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].index, 1);
  EXPECT_EQ(second[0].prompt.size(), 2u);
  EXPECT_EQ(second[0].sampling.seed, 1001u);  // seed + file index
  EXPECT_EQ(second[0].sampling.top_k, 5);
  EXPECT_FALSE(second[0].ignore_eos);
  EXPECT_EQ(second[1].index, 3);
  EXPECT_FLOAT_EQ(second[1].sampling.temperature, 0.7f);
  EXPECT_EQ(second[1].sampling.seed, 99u);
  EXPECT_TRUE(second[1].ignore_eos);
  EXPECT_EQ(requests_for_replica(specs, 2, 0, d).size(), 3u);
  EXPECT_EQ(requests_for_replica(specs, 1, 0, d).size(), 5u);
  EXPECT_THROW(requests_for_replica(specs, 2, 2, d), Error);
}

TEST(Startup, TheLogLineGivesEachPartAndTheReadRate) {
  StartupRecord s{2.0, 4000000000, 0.5, 1.25, 3, 4.0};
  const std::string line = describe_startup(s);
  EXPECT_NE(line.find("ready in 4 s"), std::string::npos) << line;
  EXPECT_NE(line.find("4 GB read in 2 s (2 GB/s)"), std::string::npos) << line;
  EXPECT_NE(line.find("3 decode graphs recorded in 1.25 s"), std::string::npos) << line;
  EXPECT_EQ(line.find("warm-up"), std::string::npos) << line;  // none ran
  s.warmup_seconds = 0.25;
  EXPECT_NE(describe_startup(s).find("warm-up forward 0.25 s"), std::string::npos) << describe_startup(s);
  s.graphs = 0;
  EXPECT_EQ(describe_startup(s).find("graphs"), std::string::npos) << describe_startup(s);
}

}  // namespace
}  // namespace moetron
