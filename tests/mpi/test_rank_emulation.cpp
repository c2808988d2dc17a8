// Rank emulation takes the same kernels as the real rank: for every plan of the job's size, each
// rank runs its share of a real run on the CPU over MPI, then emulates its own rank alone
// (--emulate-rank, on MPI_COMM_SELF); the operator sequences the backend saw must be equal.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/engine/run_session.hpp"
#include "../common/counting_ops.hpp"

using namespace moetron;

namespace {

// A qwen2_moe shape (shared expert with its sigmoid gate, top-4 of 8 experts), tiny: its plans
// reach tp and ep sharding, dp dispatch and pp stages on up to 8 ranks.
ModelConfig emulation_config() {
  const nlohmann::json j = {
      {"model_type", "qwen2_moe"}, {"vocab_size", 128}, {"hidden_size", 32}, {"intermediate_size", 32},
      {"moe_intermediate_size", 16}, {"shared_expert_intermediate_size", 16}, {"num_hidden_layers", 4},
      {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"num_experts", 8}, {"num_experts_per_tok", 4},
      {"max_position_embeddings", 128}, {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0},
      {"norm_topk_prob", false}, {"eos_token_id", 2}, {"decoder_sparse_step", 1}};
  return parse_model_config(j, "test config");
}

// Replicas get equal shares (8 requests of one length), so every replica steps alike: the
// emulation's assumption of symmetric ranks holds exactly.
std::vector<RequestSpec> symmetric_requests() {
  std::vector<RequestSpec> requests;
  for (int i = 0; i < 8; ++i) {
    RequestSpec r;
    r.id = "r" + std::to_string(i);
    r.prompt_tokens = {3 + i, 40 + 2 * i, 77, 5 + 3 * i, 9};
    r.max_new_tokens = 3;
    r.line = i + 1;
    requests.push_back(r);
  }
  return requests;
}

std::vector<std::string> traced_run(const ModelConfig& config, const std::vector<RequestSpec>& requests,
                                    const Plan& plan, const Emulation& emulation, MPI_Comm world) {
  RunSettings settings;
  settings.dummy_weights = true;
  settings.weights_seed = 5;
  settings.plan = plan;
  settings.defaults.ignore_eos = true;  // every replica makes exactly its tokens
  settings.emulation = emulation;
  CountingOps* counting = nullptr;
  DeviceAccess device;
  device.make_ops = [&counting](size_t) {
    auto ops = std::make_unique<CountingOps>(make_cpu_ops());
    counting = ops.get();
    return std::unique_ptr<Ops>(std::move(ops));
  };
  device.bind_transports = [](ParallelGroups&, Ops&) {};  // host tensors: MPI carries them
  device.storage = backend_storage("cpu");
  RunSession session(config, requests, settings, device, world);
  session.run();
  return counting->calls();
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

}  // namespace

TEST(RankEmulation, EveryPlanOfTheJobTakesTheRealRanksOperators) {
  const ModelConfig config = emulation_config();
  const std::vector<RequestSpec> requests = symmetric_requests();
  const std::vector<Plan> plans = enumerate_plans(config, world_size());
  ASSERT_FALSE(plans.empty());
  for (const Plan& plan : plans) {
    SCOPED_TRACE("plan " + plan.to_string() + ", rank " + std::to_string(world_rank()));
    const std::vector<std::string> real = traced_run(config, requests, plan, Emulation{}, MPI_COMM_WORLD);
    const std::vector<std::string> emulated =
        traced_run(config, requests, plan, Emulation{world_rank(), world_size()}, MPI_COMM_SELF);
    EXPECT_GT(real.size(), 0u);
    EXPECT_EQ(emulated, real);
  }
}
