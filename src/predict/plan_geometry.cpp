#include "moetron/predict/plan_geometry.hpp"

#include "moetron/core/error.hpp"

namespace moetron {

namespace {

LinkScope scope(bool inside_one_node) { return inside_one_node ? LinkScope::IntraNode : LinkScope::InterNode; }

// Every group of `size` consecutive ranks starting at a multiple of `size` lies in one node.
bool consecutive_groups_inside_nodes(int world, int size, int per_node) {
  for (int first = 0; first < world; first += size)
    if (first / per_node != (first + size - 1) / per_node) return false;
  return true;
}

}  // namespace

PlanGeometry plan_geometry(const ModelConfig& config, const Plan& plan, int ranks_per_node) {
  MOETRON_ASSERT(ranks_per_node > 0);
  PlanGeometry g;
  g.config = &config;
  g.plan = plan;
  for (int s = 0; s < plan.pp; ++s)
    g.stages.push_back(layout_for(plan, config, rank_of(plan, Coords{s, 0, 0})).shard);

  const int world = plan.world_size(), stage_size = plan.stage_size();
  g.tp = scope(consecutive_groups_inside_nodes(world, plan.tp, ranks_per_node));
  g.stage = scope(consecutive_groups_inside_nodes(world, stage_size, ranks_per_node));
  g.world = scope(consecutive_groups_inside_nodes(world, world, ranks_per_node));
  bool pairs_inside = true;
  for (int r = 0; r + stage_size < world; ++r)
    pairs_inside = pairs_inside && r / ranks_per_node == (r + stage_size) / ranks_per_node;
  g.pipeline = scope(pairs_inside);
  // Nodes hold consecutive ranks, so a replica lies in one node when its first and last do.
  bool replicas_inside = true;
  for (int d = 0; d < plan.dp; ++d) {
    const int first = rank_of(plan, Coords{0, d, 0}), last = rank_of(plan, Coords{plan.pp - 1, d, plan.tp - 1});
    replicas_inside = replicas_inside && first / ranks_per_node == last / ranks_per_node;
  }
  g.replica = scope(replicas_inside);
  return g;
}

}  // namespace moetron
