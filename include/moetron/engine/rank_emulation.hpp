// Rank emulation (`moetron run --emulate-rank R --emulate-world N --plan ...`): one process runs
// rank R's share of an N-rank plan (its layers, heads, experts and the expert tokens it would
// receive) over emulated groups (comm/emulated_communicator.hpp), so that plans for more GPUs
// than are at hand can be timed on one device.
#pragma once
#include <memory>
#include <string>

#include "moetron/comm/emulated_communicator.hpp"
#include "moetron/parallel/groups.hpp"

namespace moetron {

struct Emulation {
  int rank = -1;   // --emulate-rank; -1: not emulating
  int world = 0;   // --emulate-world
  bool active() const { return rank >= 0; }
};

// The first reason these options cannot run, naming them, or "" when they can: both options
// given together, the rank inside [0, world), an explicit plan of `world` ranks (plan_text is
// --plan as given; "auto" is refused), and a job of one process (`mpi_world_size`).
// `emulate_rank_given` / `emulate_world_given` say which of the two options the command line had.
std::string emulation_problem(bool emulate_rank_given, bool emulate_world_given, const Emulation& e,
                              const std::string& plan_text, int mpi_world_size);

// Rank e.rank's groups under `plan`, every group of more than one rank emulated over `buffers`
// (groups of one are SelfCommunicators, as build_groups makes them). Validates the plan against
// the config and e.world first.
ParallelGroups emulated_groups(const Plan& plan, const ModelConfig& config, const Emulation& e,
                               const std::shared_ptr<EmulationBuffers>& buffers);

}  // namespace moetron
