// Rank emulation takes the same kernels as the real rank: for every plan of the job's size, each
// rank runs its share of a real run on the CPU over MPI, then emulates its own rank alone
// (--emulate-rank, on MPI_COMM_SELF); the operator sequences the backend saw must be equal.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/backend/expert_dispatch.hpp"
#include "moetron/engine/run_session.hpp"
#include "moetron/model/routing_skew.hpp"
#include "moetron/parallel/expert_replicas.hpp"
#include "../common/counting_ops.hpp"
#include "../common/mpi_world.hpp"

using namespace moetron;

namespace {

// A qwen2_moe shape (shared expert with its sigmoid gate, top-4 of 8 experts), tiny: its plans
// reach tp and ep sharding, dp dispatch and pp stages on up to 8 ranks.
ModelConfig emulation_config(int64_t experts = 8, int64_t top_k = 4) {
  const nlohmann::json j = {
      {"model_type", "qwen2_moe"}, {"vocab_size", 128}, {"hidden_size", 32}, {"intermediate_size", 32},
      {"moe_intermediate_size", 16}, {"shared_expert_intermediate_size", 16}, {"num_hidden_layers", 4},
      {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"num_experts", experts}, {"num_experts_per_tok", top_k},
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

// The placement a run recorded ([layers, R, 2] of (expert, set), -1 rows unused), rebuilt.
ExpertReplicas placement_of(const std::vector<int64_t>& record, int64_t layers, int64_t experts, int64_t ep,
                            int64_t redundant) {
  ExpertReplicas r;
  r.experts = experts;
  r.sets = ep;
  r.slots = replica_slots_per_set(redundant, ep);
  r.layers.resize(static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t i = 0; i < redundant; ++i) {
      const int64_t* row = &record[static_cast<size_t>((l * redundant + i) * 2)];
      if (row[0] >= 0) r.layers[static_cast<size_t>(l)].push_back({row[0], row[1]});
    }
  return r;
}

// At batch 1 every token is t = 0, so replica d sends each slot of expert e to the copy its
// table (rotation d) lists first. What the dp replicas together send set `set`, given one
// replica's routed token-slots [layers * E] (every replica routes alike): the real rank's
// served slots. With `every_peer_as` >= 0, every replica routes as that one instead (the old
// emulation).
int64_t served_at_batch_one(const ExpertReplicas& r, const std::vector<int64_t>& tokens, int64_t dp, int64_t set,
                            int64_t every_peer_as = -1) {
  int64_t served = 0;
  const int64_t width = r.slot_width();
  for (size_t l = 0; l < r.layers.size(); ++l)
    for (int64_t d = 0; d < dp; ++d) {
      const std::vector<int32_t> table =
          replica_route_table(r, static_cast<int64_t>(l), every_peer_as >= 0 ? every_peer_as : d);
      for (int32_t e = 0; e < r.experts; ++e) {
        int32_t slot = -1;
        route_to_replicas_host(&e, 1, 1, table.data(), r.experts, 1 + r.sets, &slot);
        if (slot / width == set) served += tokens[l * static_cast<size_t>(r.experts) + static_cast<size_t>(e)];
      }
    }
  return served;
}

using test_mpi::world_rank;
using test_mpi::world_size;

}  // namespace

// Whether `real` is `emulated` less the ops rank emulation adds where its peers route as their
// replicas would (forward.cpp's route_as_peers): pack_from_peers, the rows gathered and the
// expert ids copied over the all-to-all's copies, and on the counts path the blocks cut on the
// host. Returns the first op that breaks it, or "".
std::string real_ops_within(const std::vector<std::string>& real, const std::vector<std::string>& emulated) {
  const std::vector<std::string> added = {"pack_from_peers", "gather_rows", "copy", "to_host", "copy_from_host"};
  size_t r = 0;
  for (const std::string& op : emulated) {
    if (r < real.size() && op == real[r]) {
      ++r;
    } else if (std::find(added.begin(), added.end(), op) == added.end()) {
      return "emulated op '" + op + "' where the real rank ran '" + (r < real.size() ? real[r] : "nothing") + "'";
    }
  }
  return r == real.size() ? "" : "the real rank's op '" + real[r] + "' has no emulated counterpart";
}

TEST(RankEmulation, EveryPlanOfTheJobTakesTheRealRanksOperators) {
  const ModelConfig config = emulation_config();
  const std::vector<RequestSpec> requests = symmetric_requests();
  const std::vector<Plan> plans = enumerate_plans(config, world_size());
  ASSERT_FALSE(plans.empty());
  for (const Plan& plan : plans) {
    SCOPED_TRACE("plan " + plan.to_string() + ", rank " + std::to_string(world_rank()));
    const std::vector<std::string> real = traced_run(config, requests, plan, Emulation{}, MPI_COMM_WORLD);
    // Peers that route as this rank: exactly the real rank's operators.
    const std::vector<std::string> same =
        traced_run(config, requests, plan, Emulation{world_rank(), world_size(), EmulatedPeers::Same}, MPI_COMM_SELF);
    EXPECT_GT(real.size(), 0u);
    EXPECT_EQ(same, real);
    // Rotated peers (the default): the real rank's operators, and the packing of the peers'
    // blocks where there is an expert dispatch (dp > 1), in order.
    const std::vector<std::string> rotated =
        traced_run(config, requests, plan, Emulation{world_rank(), world_size()}, MPI_COMM_SELF);
    EXPECT_EQ(real_ops_within(real, rotated), "");
    const bool packs = std::find(rotated.begin(), rotated.end(), "pack_from_peers") != rotated.end();
    EXPECT_EQ(packs, plan.dp > 1);
  }
}

// Redundant experts under emulation: each replica starts its copy tables at another copy (its dp
// index), so an emulated peer must route with its own table, not the emulated rank's. At batch 1
// (one single-token request per replica: every step's token is t = 0, the case the rotation is
// for) each emulated rank of dp = 2 and dp = 3 (6 experts: 2 and 3 sets, a hot expert's 2 copies
// do not divide 3 replicas) must serve what the real rank would: the sum over the replicas'
// tables of its slots, both in prefill (counts exchanged) and in decode (fixed capacity).
TEST(RankEmulation, EachEmulatedPeerRoutesWithItsOwnReplicasRotation) {
  if (world_size() > 1) GTEST_SKIP() << "runs its emulated ranks on one MPI rank";
  const int64_t experts = 6, layers = 4, redundant = 3;
  const ModelConfig config = emulation_config(experts, 2);
  for (const int dp : {2, 3}) {
    std::vector<RequestSpec> requests;
    for (int i = 0; i < dp; ++i) {  // the same request on every replica
      RequestSpec r;
      r.id = "r" + std::to_string(i);
      r.prompt_tokens = {11};
      r.max_new_tokens = 6;
      r.line = i + 1;
      requests.push_back(r);
    }
    bool rotation_mattered = false;
    for (int rank = 0; rank < dp; ++rank) {
      SCOPED_TRACE("dp=" + std::to_string(dp) + ", emulated rank " + std::to_string(rank));
      RunSettings settings;
      settings.dummy_weights = true;
      settings.weights_seed = 7;
      settings.routing_skew = parse_routing_skew("zipf:1.5");
      settings.redundant_experts = redundant;
      settings.expert_loads.assign(static_cast<size_t>(layers * experts), 1);
      for (int64_t l = 0; l < layers; ++l)  // expert 0 hottest, then 1: both get copies
        settings.expert_loads[static_cast<size_t>(l * experts)] = 50, settings.expert_loads[static_cast<size_t>(l * experts + 1)] = 20;
      settings.plan = parse_plan("dp=" + std::to_string(dp) + ",ep=" + std::to_string(dp));
      settings.defaults.ignore_eos = true;
      settings.emulation = Emulation{rank, dp, EmulatedPeers::Same};  // every replica routes alike
      DeviceAccess device;
      device.make_ops = [](size_t) { return make_cpu_ops(); };
      device.bind_transports = [](ParallelGroups&, Ops&) {};
      device.storage = backend_storage("cpu");
      RunSession session(config, requests, settings, device, MPI_COMM_SELF);
      const RunOutcome out = session.run();
      const ExpertReplicas placed = placement_of(out.replica_placement, layers, experts, dp, redundant);
      std::vector<int64_t> per_replica = out.expert_tokens;  // one replica's: every replica routes alike
      const int64_t real = served_at_batch_one(placed, per_replica, dp, rank);
      EXPECT_GT(real, 0);
      EXPECT_EQ(out.expert_work.tokens.at(static_cast<size_t>(rank)), real);
      if (served_at_batch_one(placed, per_replica, dp, rank, rank) != real) rotation_mattered = true;
    }
    EXPECT_TRUE(rotation_mattered) << "dp=" << dp << ": no emulated rank's served slots depend on the peers' rotation";
  }
}

namespace {

// The expert token-slots emulated rank `rank` of `plan` serves over symmetric_requests() (dummy
// weights, CPU backend) with its peers routing as `peers` says.
int64_t served_by_emulated_rank(const ModelConfig& config, const Plan& plan, int rank, EmulatedPeers peers) {
  RunSettings settings;
  settings.dummy_weights = true;
  settings.weights_seed = 3;
  settings.plan = plan;
  settings.defaults.ignore_eos = true;
  settings.emulation = Emulation{rank, plan.world_size(), peers};
  DeviceAccess device;
  device.make_ops = [](size_t) { return make_cpu_ops(); };
  device.bind_transports = [](ParallelGroups&, Ops&) {};
  device.storage = backend_storage("cpu");
  RunSession session(config, symmetric_requests(), settings, device, MPI_COMM_SELF);
  return session.run().expert_work.tokens.at(static_cast<size_t>(rank));
}

}  // namespace

// Rotated peers move each peer's picks within the EP sets, so an emulated rank serves exactly
// the token-slots it serves when every peer routes as it does (its set's load), now spread over
// the set's experts; its own tokens' results, which steer the later layers and steps, come from
// its own block (distance 0) either way. dp = 4 over 2 sets of 4 experts, dp = 3 (awkward: 3
// replicas over sets of 2 of 6 experts); tp = 1, where both modes send each peer's same tokens.
TEST(RankEmulation, RotatedPeersServeTheSetsOwnLoad) {
  if (world_size() > 1) GTEST_SKIP() << "runs its emulated ranks on one MPI rank";
  for (const auto& [experts, plan_text] : {std::make_pair<int64_t, std::string>(8, "dp=4,ep=2"),
                                           std::make_pair<int64_t, std::string>(6, "dp=3,ep=3")}) {
    const ModelConfig config = emulation_config(experts, 2);
    const Plan plan = parse_plan(plan_text);
    for (int rank = 0; rank < plan.world_size(); ++rank) {
      SCOPED_TRACE(plan_text + ", emulated rank " + std::to_string(rank));
      int64_t served[2] = {0, 0};
      for (const EmulatedPeers peers : {EmulatedPeers::Same, EmulatedPeers::Rotated}) {
        served[peers == EmulatedPeers::Rotated] = served_by_emulated_rank(config, plan, rank, peers);
      }
      EXPECT_GT(served[0], 0);
      EXPECT_EQ(served[1], served[0]);
    }
  }
}

// Spread peers where a set holds one expert (8 experts, dp = ep = 8) and where dp equals the
// sets (dp = ep = 4, sets of 2): peer d's picks land d sets on, so over the dp replicas each set
// receives every pick of the rank's own tokens once, whatever the routing: every rank serves a
// replica's token-slots, the mean a real rank serves (each replica's 8 / dp requests of 5 prompt
// and 2 decoded tokens, top-2, 4 MoE layers). Same and Rotated (alike here, where dp is the
// number of sets) give each rank dp times its own tokens' count for its set, which varies.
TEST(RankEmulation, SpreadPeersGiveEverySetTheMeanLoad) {
  if (world_size() > 1) GTEST_SKIP() << "runs its emulated ranks on one MPI rank";
  for (const auto& [experts, plan_text] : {std::make_pair<int64_t, std::string>(8, "dp=8,ep=8"),
                                           std::make_pair<int64_t, std::string>(8, "dp=4,ep=4")}) {
    const ModelConfig config = emulation_config(experts, 2);
    const Plan plan = parse_plan(plan_text);
    std::vector<int64_t> served[3];  // per rank: Same, Rotated, Spread
    for (const EmulatedPeers peers : {EmulatedPeers::Same, EmulatedPeers::Rotated, EmulatedPeers::Spread}) {
      for (int rank = 0; rank < plan.world_size(); ++rank) {
        served[static_cast<int>(peers)].push_back(served_by_emulated_rank(config, plan, rank, peers));
      }
    }
    const auto& same = served[static_cast<int>(EmulatedPeers::Same)];
    const auto& spread = served[static_cast<int>(EmulatedPeers::Spread)];
    SCOPED_TRACE(plan_text);
    EXPECT_EQ(served[static_cast<int>(EmulatedPeers::Rotated)], same);  // sets of one or two, dp = sets: see above
    EXPECT_GT(*std::max_element(same.begin(), same.end()), *std::min_element(same.begin(), same.end()));
    const int64_t replica_slots = 8 / plan.dp * (5 + 2) * 2 * 4;
    for (int64_t s : spread) EXPECT_EQ(s, replica_slots);
  }
}
