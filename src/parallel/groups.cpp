#include "moetron/parallel/groups.hpp"

#include <algorithm>

#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

namespace {

// How each group is cut from the world: ranks with the same color form a group, ordered by key.
struct Split {
  int color, key;
};
Split tp_split(const Plan& p, const Coords& c) { return {c.pp * p.dp + c.dp, c.tp}; }
Split stage_split(const Plan& p, const Coords& c) { return {c.pp, stage_index(p, c)}; }
Split replica_split(const Plan& p, const Coords& c) { return {c.dp, c.pp * p.tp + c.tp}; }
Split pipeline_split(const Plan& p, const Coords& c) { return {c.dp * p.tp + c.tp, c.pp}; }

// The world ranks that share `rank`'s color under `split`, in key order.
template <class SplitFn>
std::vector<int> members(const Plan& plan, int rank, SplitFn split) {
  Split mine = split(plan, coords_of(plan, rank));
  std::vector<std::pair<int, int>> keyed;
  for (int r = 0; r < plan.world_size(); ++r) {
    Split s = split(plan, coords_of(plan, r));
    if (s.color == mine.color) keyed.emplace_back(s.key, r);
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<int> ranks;
  for (const auto& kr : keyed) ranks.push_back(kr.second);
  return ranks;
}

std::shared_ptr<Communicator> split_group(MPI_Comm world, Split s, const char* label) {
  MPI_Comm comm;
  check_mpi(MPI_Comm_split(world, s.color, s.key, &comm), "MPI_Comm_split");
  auto group = std::make_shared<MpiCommunicator>(comm, label);  // owns comm: freed if not kept
  if (group->size() > 1) return group;
  return make_self_communicator();
}

}  // namespace

GroupMembers group_members(const Plan& plan, int rank) {
  return {members(plan, rank, tp_split), members(plan, rank, stage_split),
          members(plan, rank, replica_split), members(plan, rank, pipeline_split)};
}

ParallelGroups build_groups(const Plan& plan, const ModelConfig& config, MPI_Comm world) {
  int world_size = 0, world_rank = 0;
  check_mpi(MPI_Comm_size(world, &world_size), "MPI_Comm_size");
  check_mpi(MPI_Comm_rank(world, &world_rank), "MPI_Comm_rank");
  validate_plan(plan, config, world_size, MemoryBudget{});  // memory: agree_plan checked it

  ParallelGroups g;
  g.plan = plan;
  g.world_rank = world_rank;
  g.coords = coords_of(plan, world_rank);
  g.layout = layout_for(plan, config, world_rank);
  g.world = world_size > 1 ? std::shared_ptr<Communicator>(make_mpi_communicator(world, "world"))
                           : std::shared_ptr<Communicator>(make_self_communicator());
  g.tp = split_group(world, tp_split(plan, g.coords), "tp group");
  g.stage = split_group(world, stage_split(plan, g.coords), "stage group");
  g.replica = split_group(world, replica_split(plan, g.coords), "replica group");
  g.pipeline = split_group(world, pipeline_split(plan, g.coords), "pipeline group");
  return g;
}

}  // namespace moetron
