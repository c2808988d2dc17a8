// Rank emulation (`moetron run --emulate-rank R --emulate-world N --plan ...`): one process runs
// rank R's share of an N-rank plan (its layers, heads, experts and the expert tokens it would
// receive) over emulated groups (comm/emulated_communicator.hpp), so that plans for more GPUs
// than are at hand can be timed on one device.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "moetron/comm/emulated_communicator.hpp"
#include "moetron/parallel/groups.hpp"

namespace moetron {

// How an emulated rank's expert-parallel peers route the tokens they send it (--emulate-peers).
// Emulation's assumption is that every replica holds this rank's tokens; where the peers then
// pick the same experts as this rank (Same), the rank's rows pile onto the few experts its own
// tokens chose, and it streams fewer expert weights than a real rank, whose peers serve other
// requests. Rotated (the default) keeps the picks but moves peer d's within every EP set by d's
// distance from this replica: each set's load, and so the imbalance between ranks, is this
// rank's routing's, spread over the set's experts as distinct requests spread it. With one
// expert a set the two are the same: a set's rows are then dp times this rank's own count (0,
// dp, 2 dp ... where a real set receives about the mean). Spread also moves peer d's picks d
// sets on, so a set's load sums this rank's counts over several sets, as distinct requests
// would under uniform routing (the predictor's assumption); it flattens the per-set skew that
// --routing-skew makes, which Rotated keeps.
enum class EmulatedPeers { Rotated, Same, Spread };

// "rotated", "same" or "spread"; anything else is refused naming --emulate-peers.
EmulatedPeers parse_emulated_peers(const std::string& text);
const char* emulated_peers_name(EmulatedPeers peers);

struct Emulation {
  int rank = -1;   // --emulate-rank; -1: not emulating
  int world = 0;   // --emulate-world
  EmulatedPeers peers = EmulatedPeers::Rotated;  // --emulate-peers
  bool active() const { return rank >= 0; }
};

// The route table (replica_route_table's layout: [experts, cols], row e = copies of e, then
// their slot ids) emulated peer replica `distance` replicas from this one routes with: row e is
// base's row for e moved `distance` places within its EP set of `set_size` experts (e's set
// keeps its load), and with `across_sets` also `distance` sets on (modulo the sets). An empty
// base stands for no redundant experts: row e = (1, e).
std::vector<int32_t> emulated_peer_table(const std::vector<int32_t>& base, int64_t experts, int64_t set_size,
                                         int64_t distance, bool across_sets = false);

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
