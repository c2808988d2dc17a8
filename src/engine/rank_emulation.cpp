#include "moetron/engine/rank_emulation.hpp"

#include <algorithm>
#include <sstream>

#include "moetron/core/error.hpp"

namespace moetron {

std::string emulation_problem(bool emulate_rank_given, bool emulate_world_given, const Emulation& e,
                              const std::string& plan_text, int mpi_world_size) {
  std::ostringstream os;
  if (!emulate_rank_given && !emulate_world_given) return "";
  if (emulate_rank_given != emulate_world_given) {
    os << (emulate_rank_given ? "--emulate-rank needs --emulate-world N (the plan's ranks)"
                              : "--emulate-world needs --emulate-rank R (the rank to run)");
  } else if (e.world < 1) {
    os << "--emulate-world must be at least 1, got " << e.world;
  } else if (e.rank < 0 || e.rank >= e.world) {
    os << "--emulate-rank " << e.rank << " is outside [0, " << e.world << ") (--emulate-world " << e.world << ")";
  } else if (is_auto_plan(plan_text)) {
    os << "--emulate-rank needs an explicit --plan pp=P,tp=T,dp=D,ep=E of " << e.world
       << " ranks (--plan auto chooses among the job's own ranks)";
  } else if (mpi_world_size > 1) {
    os << "--emulate-rank runs one rank's share in one process, but this job has " << mpi_world_size
       << " MPI ranks: start it without mpirun (or with -np 1)";
  } else {
    const Plan plan = parse_plan(plan_text);
    if (plan.world_size() != e.world)
      os << "--plan " << plan.to_string() << " has " << plan.world_size() << " ranks (pp x tp x dp) but --emulate-world is "
         << e.world;
  }
  return os.str();
}

EmulatedPeers parse_emulated_peers(const std::string& text) {
  if (text == "rotated") return EmulatedPeers::Rotated;
  if (text == "spread") return EmulatedPeers::Spread;
  MOETRON_CHECK(text == "same", "--emulate-peers: unknown mode '" << text << "' (expected rotated, spread or same)");
  return EmulatedPeers::Same;
}

const char* emulated_peers_name(EmulatedPeers peers) {
  switch (peers) {
    case EmulatedPeers::Rotated: return "rotated";
    case EmulatedPeers::Spread: return "spread";
    case EmulatedPeers::Same: break;
  }
  return "same";
}

std::vector<int32_t> emulated_peer_table(const std::vector<int32_t>& base, int64_t experts, int64_t set_size,
                                         int64_t distance, bool across_sets) {
  MOETRON_CHECK(experts > 0 && set_size > 0 && experts % set_size == 0 && distance >= 0,
                "emulated_peer_table: " << experts << " experts in sets of " << set_size << ", distance " << distance);
  const int64_t cols = base.empty() ? 2 : static_cast<int64_t>(base.size()) / experts;
  MOETRON_CHECK(base.empty() || (cols >= 2 && static_cast<int64_t>(base.size()) == experts * cols),
                "emulated_peer_table: a table of " << base.size() << " entries for " << experts << " experts");
  std::vector<int32_t> table(static_cast<size_t>(experts * cols));
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t sets = experts / set_size;
    const int64_t set = across_sets ? (e / set_size + distance) % sets : e / set_size;
    const int64_t moved = set * set_size + (e % set_size + distance) % set_size;
    int32_t* row = &table[static_cast<size_t>(e * cols)];
    if (base.empty()) {
      row[0] = 1, row[1] = static_cast<int32_t>(moved);
    } else {
      std::copy_n(&base[static_cast<size_t>(moved * cols)], cols, row);
    }
  }
  return table;
}

namespace {

std::shared_ptr<Communicator> emulated_group(const std::vector<int>& members, int world_rank,
                                             const std::shared_ptr<EmulationBuffers>& buffers) {
  if (members.size() <= 1) return make_self_communicator();
  const auto at = std::find(members.begin(), members.end(), world_rank);
  MOETRON_ASSERT(at != members.end());
  return make_emulated_communicator(static_cast<int>(at - members.begin()), static_cast<int>(members.size()), buffers);
}

}  // namespace

ParallelGroups emulated_groups(const Plan& plan, const ModelConfig& config, const Emulation& e,
                               const std::shared_ptr<EmulationBuffers>& buffers) {
  MOETRON_CHECK(e.active(), "emulated_groups: no rank to emulate");
  validate_plan(plan, config, e.world, MemoryBudget{});
  ParallelGroups g;
  g.plan = plan;
  g.world_rank = e.rank;
  g.coords = coords_of(plan, e.rank);
  g.layout = layout_for(plan, config, e.rank);
  std::vector<int> everyone(static_cast<size_t>(e.world));
  for (int r = 0; r < e.world; ++r) everyone[static_cast<size_t>(r)] = r;
  const GroupMembers m = group_members(plan, e.rank);
  g.world = emulated_group(everyone, e.rank, buffers);
  g.tp = emulated_group(m.tp, e.rank, buffers);
  g.stage = emulated_group(m.stage, e.rank, buffers);
  g.replica = emulated_group(m.replica, e.rank, buffers);
  g.pipeline = emulated_group(m.pipeline, e.rank, buffers);
  return g;
}

}  // namespace moetron
