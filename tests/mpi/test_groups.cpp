// build_groups for every valid plan of the job's size: each group has the members the plan's
// definitions give, in the documented order, as seen through the group itself (an all-gather
// of world ranks), and the rank's coordinates and layout are its own.
#include <gtest/gtest.h>
#include <mpi.h>

#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"
#include "moetron/parallel/groups.hpp"
#include "../common/moe_config.hpp"

using namespace moetron;

namespace {

// Many plans are valid for it on 1, 2, 4 and 8 ranks (8 heads over 2 kv heads, 8 experts).
ModelConfig shardable_config() { return moe_config({64, 32, 8, 8, 2, 4, 16, 8, 2}); }

// The expected members, written from the definitions in plan.hpp and groups.hpp.
std::vector<int> expected_tp(const Plan& p, const Coords& c) {
  std::vector<int> r;
  for (int t = 0; t < p.tp; ++t) r.push_back(rank_of(p, {c.pp, c.dp, t}));
  return r;
}
std::vector<int> expected_stage(const Plan& p, const Coords& c) {
  std::vector<int> r;
  for (int d = 0; d < p.dp; ++d)
    for (int t = 0; t < p.tp; ++t) r.push_back(rank_of(p, {c.pp, d, t}));
  return r;
}
std::vector<int> expected_replica(const Plan& p, const Coords& c) {
  std::vector<int> r;
  for (int s = 0; s < p.pp; ++s)
    for (int t = 0; t < p.tp; ++t) r.push_back(rank_of(p, {s, c.dp, t}));
  return r;
}
std::vector<int> expected_pipeline(const Plan& p, const Coords& c) {
  std::vector<int> r;
  for (int s = 0; s < p.pp; ++s) r.push_back(rank_of(p, {s, c.dp, c.tp}));
  return r;
}

// World ranks of the group's members, in group order, as the group itself reports them.
std::vector<int> gathered_members(Communicator& group, int world_rank) {
  Tensor mine = host_tensor(DType::I64, {1});
  mine.as<int64_t>()[0] = world_rank;
  Tensor all = host_tensor(DType::I64, {group.size()});
  group.allgather(mine, all);
  return std::vector<int>(all.as<int64_t>(), all.as<int64_t>() + group.size());
}

void expect_group(Communicator& group, const std::vector<int>& expected, int world_rank,
                  const std::string& what) {
  ASSERT_EQ(group.size(), static_cast<int>(expected.size())) << what;
  EXPECT_EQ(group.transport(), group.size() == 1 ? "self" : "mpi") << what;
  EXPECT_EQ(expected.at(group.rank()), world_rank) << what;
  EXPECT_EQ(gathered_members(group, world_rank), expected) << what;
}

TEST(Groups, EveryValidPlanGetsTheGroupsItsDefinitionsGive) {
  int world_size = 0, world_rank = 0;
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world_size), "MPI_Comm_size");
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank), "MPI_Comm_rank");
  const ModelConfig config = shardable_config();
  std::vector<Plan> plans = enumerate_plans(config, world_size);
  ASSERT_FALSE(plans.empty());
  for (const Plan& plan : plans) {
    const std::string what = plan.to_string();
    ParallelGroups g = build_groups(plan, config, MPI_COMM_WORLD);
    const Coords c = coords_of(plan, world_rank);
    EXPECT_EQ(g.plan, plan);
    EXPECT_EQ(g.world_rank, world_rank);
    EXPECT_EQ(g.coords, c) << what;
    EXPECT_EQ(g.layout.shard.experts(), layout_for(plan, config, world_rank).shard.experts()) << what;
    std::vector<int> everyone(world_size);
    for (int r = 0; r < world_size; ++r) everyone[r] = r;
    expect_group(*g.world, everyone, world_rank, what + " world");
    expect_group(*g.tp, expected_tp(plan, c), world_rank, what + " tp");
    expect_group(*g.stage, expected_stage(plan, c), world_rank, what + " stage");
    expect_group(*g.replica, expected_replica(plan, c), world_rank, what + " replica");
    expect_group(*g.pipeline, expected_pipeline(plan, c), world_rank, what + " pipeline");

    GroupMembers m = group_members(plan, world_rank);
    EXPECT_EQ(m.tp, expected_tp(plan, c)) << what;
    EXPECT_EQ(m.stage, expected_stage(plan, c)) << what;
    EXPECT_EQ(m.replica, expected_replica(plan, c)) << what;
    EXPECT_EQ(m.pipeline, expected_pipeline(plan, c)) << what;
  }
}

TEST(Groups, RefusesAPlanForAnotherWorldSize) {
  int world_size = 0;
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world_size), "MPI_Comm_size");
  Plan wrong{1, 1, world_size + 1, 1};
  // Every rank throws before any collective, so no rank is left waiting.
  EXPECT_THROW(build_groups(wrong, shardable_config(), MPI_COMM_WORLD), Error);
}

}  // namespace
