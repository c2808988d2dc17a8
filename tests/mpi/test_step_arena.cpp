// The CUDA step arena's estimate (step_arena_bytes, parallel/memory_need.hpp) against what a run
// keeps alive: each emulated rank of several plans runs, on the CPU backend, a full prefill step of
// --max-batch-tokens and decode steps of --max-batch; the most bytes of temporaries alive at once
// (cpu_peak_temp_bytes, counted as CudaOps counts its arena) must fit what the estimate counts
// before its slack (step_temp_bytes at float32). The models are small, so the slack (64 MiB)
// alone would hold any of them: the check is on the counted part.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/engine/run_session.hpp"
#include "moetron/model/routing_skew.hpp"
#include "moetron/parallel/plan.hpp"
#include "../common/mpi_world.hpp"

using namespace moetron;

namespace {

// Awkward shapes: 12 experts (3 sets of 4, or 2 of 6), odd heads, a hidden width that is no power
// of two, whole-row QK norm (olmoe, normed across tp ranks) or a shared expert (qwen2_moe).
ModelConfig arena_config(const std::string& type, int64_t top_k) {
  nlohmann::json j = {
      {"model_type", type}, {"vocab_size", 96}, {"hidden_size", 48}, {"intermediate_size", 48},
      {"moe_intermediate_size", 24}, {"num_hidden_layers", 3}, {"num_attention_heads", 4},
      {"num_key_value_heads", 4}, {"num_experts", 12}, {"num_experts_per_tok", top_k},
      {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0},
      {"norm_topk_prob", false}, {"eos_token_id", 2}};
  if (type == "qwen2_moe") {
    j["shared_expert_intermediate_size"] = 24;
    j["decoder_sparse_step"] = 1;
    j["num_key_value_heads"] = 2;
  }
  return parse_model_config(j, "test config");
}

struct ArenaCase {
  std::string plan;
  int64_t redundant = 0;
};

// Peak temporaries of emulated rank `rank` of the case, and the estimate's counted bytes.
struct Measured {
  int64_t peak = 0, counted = 0, arena = 0;
};

// Emulates rank `rank` on MPI_COMM_SELF, or with rank < 0 runs this MPI rank of a real run on
// MPI_COMM_WORLD (the job has the plan's ranks).
Measured run_plan(const ModelConfig& config, const ArenaCase& c, int rank, int64_t max_batch, int64_t prompt) {
  const Plan plan = parse_plan(c.plan);
  // Every replica gets max_batch requests of `prompt` tokens: one prefill step of
  // max_batch * prompt tokens (the --max-batch-tokens), then decode steps of max_batch sequences.
  std::vector<RequestSpec> requests;
  for (int64_t i = 0; i < max_batch * plan.dp; ++i) {
    RequestSpec r;
    r.id = "r" + std::to_string(i);
    for (int64_t t = 0; t < prompt; ++t) r.prompt_tokens.push_back(static_cast<int32_t>(3 + (i * 7 + t * 5) % 90));
    r.max_new_tokens = 3;
    r.line = static_cast<int>(i + 1);
    requests.push_back(r);
  }
  RunSettings settings;
  settings.dummy_weights = true;
  settings.weights_seed = 11;
  settings.plan = plan;
  settings.max_batch = max_batch;
  settings.max_batch_tokens = max_batch * prompt;
  settings.defaults.ignore_eos = true;
  const bool emulated = rank >= 0;
  if (emulated) settings.emulation = Emulation{rank, plan.world_size()};
  if (!emulated) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (c.redundant > 0) {
    settings.routing_skew = parse_routing_skew("zipf:1.2");
    settings.redundant_experts = c.redundant;
    settings.expert_loads.assign(static_cast<size_t>(config.num_layers * config.num_experts), 1);
    for (int64_t l = 0; l < config.num_layers; ++l) settings.expert_loads[static_cast<size_t>(l * config.num_experts)] = 40;
  }
  const Ops* ops = nullptr;
  DeviceAccess device;
  device.make_ops = [&ops](size_t) {
    std::unique_ptr<Ops> made = make_cpu_ops();
    ops = made.get();
    return made;
  };
  device.bind_transports = [](ParallelGroups&, Ops&) {};
  device.storage = backend_storage("cpu");
  RunSession session(config, requests, settings, device, emulated ? MPI_COMM_SELF : MPI_COMM_WORLD);
  session.run();
  Measured m;
  m.peak = static_cast<int64_t>(cpu_peak_temp_bytes(*ops));
  const ShardSpec shard = layout_for(plan, config, rank).shard;
  const int64_t tokens = max_step_tokens(settings.max_batch_tokens, requests);
  m.counted = step_temp_bytes(config, shard, plan, DType::F32, tokens, max_batch, c.redundant);
  m.arena = static_cast<int64_t>(step_arena_bytes(config, shard, plan, DType::F32, tokens, max_batch, c.redundant));
  return m;
}

using test_mpi::world_size;

}  // namespace

TEST(StepArena, EmulatedRanksKeepNoMoreTemporariesThanTheEstimateCounts) {
  if (world_size() > 1) GTEST_SKIP() << "runs its emulated ranks on one MPI rank";
  const std::vector<ArenaCase> cases = {
      {"tp=2"},           {"tp=2,dp=2"},      {"tp=4,dp=2"},      {"tp=2,dp=2,ep=2"},
      {"pp=2,tp=2,dp=2"}, {"dp=3,ep=3"},      {"dp=2,ep=2", 2},   {"tp=2,dp=2,ep=2", 3},
  };
  for (const std::string type : {"olmoe", "qwen2_moe"}) {
    const ModelConfig config = arena_config(type, type == "olmoe" ? 5 : 3);
    for (const ArenaCase& c : cases) {
      const Plan plan = parse_plan(c.plan);
      for (const int rank : {0, plan.world_size() - 1}) {
        // 7 sequences of 13 tokens: a 91-token prefill, then decodes of 7.
        const Measured m = run_plan(config, c, rank, 7, 13);
        SCOPED_TRACE(type + " --plan " + c.plan + " --redundant-experts " + std::to_string(c.redundant) +
                     " --emulate-rank " + std::to_string(rank));
        EXPECT_GT(m.peak, 0);
        EXPECT_LE(m.peak, m.counted) << "a step kept " << m.peak << " bytes of temporaries; the estimate counts "
                                     << m.counted;
        EXPECT_LE(m.peak, m.arena);
      }
    }
  }
}

// The same on real ranks: every plan of the job's size among the cases, each MPI rank checking its
// own step arena (the prefill's exchange receives from real peers).
TEST(StepArena, RealRanksKeepNoMoreTemporariesThanTheEstimateCounts) {
  const std::vector<ArenaCase> cases = {{"tp=2"},           {"dp=2,ep=2"},     {"dp=2,ep=2", 2}, {"tp=2,dp=2"},
                                        {"tp=2,dp=2,ep=2"}, {"tp=4,dp=2"},     {"pp=2,tp=2,dp=2"}};
  bool ran = false;
  for (const std::string type : {"olmoe", "qwen2_moe"}) {
    const ModelConfig config = arena_config(type, type == "olmoe" ? 5 : 3);
    for (const ArenaCase& c : cases) {
      if (parse_plan(c.plan).world_size() != world_size()) continue;
      ran = true;
      const Measured m = run_plan(config, c, -1, 7, 13);
      SCOPED_TRACE(type + " --plan " + c.plan + " --redundant-experts " + std::to_string(c.redundant));
      EXPECT_GT(m.peak, 0);
      EXPECT_LE(m.peak, m.counted) << "a step kept " << m.peak << " bytes of temporaries; the estimate counts "
                                   << m.counted;
      EXPECT_LE(m.peak, m.arena);
    }
  }
  if (!ran) GTEST_SKIP() << "no case has " << world_size() << " ranks";
}
