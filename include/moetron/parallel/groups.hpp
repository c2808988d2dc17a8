// ParallelGroups: the communicators one rank needs under a plan, with its coordinates and
// shard layout. A small value passed explicitly to whoever moves data; there is no global copy.
#pragma once
#include <mpi.h>

#include <memory>
#include <vector>

#include "moetron/comm/communicator.hpp"
#include "moetron/parallel/plan.hpp"

namespace moetron {

struct ParallelGroups {
  Plan plan;
  int world_rank = 0;
  Coords coords;
  ShardLayout layout;
  // Groups of one are SelfCommunicators; the others MpiCommunicators. Each must be released
  // before MPI is finalized.
  std::shared_ptr<Communicator> world;     // every rank, in world order
  std::shared_ptr<Communicator> tp;        // same stage and replica, ordered by tp_idx
  std::shared_ptr<Communicator> stage;     // the tp*dp ranks of this stage, ordered by g (MoE)
  std::shared_ptr<Communicator> replica;   // the pp*tp ranks of this replica, by pp_idx*tp+tp_idx
  std::shared_ptr<Communicator> pipeline;  // same dp_idx and tp_idx, ordered by pp_idx
};

// World ranks of each group of `rank`, in group order: the membership build_groups creates,
// as a pure function of the plan (for tests and for logging).
struct GroupMembers {
  std::vector<int> tp, stage, replica, pipeline;
};
GroupMembers group_members(const Plan& plan, int rank);

// Collective over `world` (every rank must call it with the same plan). Validates the plan
// against the config and the communicator's size first.
ParallelGroups build_groups(const Plan& plan, const ModelConfig& config, MPI_Comm world);

}  // namespace moetron
