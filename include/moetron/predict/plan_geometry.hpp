// What the cost of a plan depends on besides the tokens: the shard of each pipeline stage's
// largest rank, and whether each kind of group the forward talks over stays inside a node.
#pragma once
#include <vector>

#include "moetron/model/config.hpp"
#include "moetron/model/weights.hpp"  // ShardSpec
#include "moetron/parallel/plan.hpp"
#include "moetron/predict/cost_model.hpp"

namespace moetron {

struct PlanGeometry {
  const ModelConfig* config = nullptr;
  Plan plan;
  // Per stage, the shard of its rank (dp 0, tp 0): split_range gives the first pieces the most,
  // so no rank of the stage holds more (plan_problem makes heads and expert columns even).
  std::vector<ShardSpec> stages;
  // A kind of group is IntraNode only when every group of that kind lies inside one node (the
  // slowest group sets the pace: replicas meet in every MoE layer, stages in every step).
  LinkScope tp = LinkScope::IntraNode;        // tensor-parallel group: tp consecutive ranks
  LinkScope stage = LinkScope::IntraNode;     // expert dispatch: the tp * dp ranks of a stage
  LinkScope pipeline = LinkScope::IntraNode;  // a rank and its peer in the next stage
  LinkScope replica = LinkScope::IntraNode;   // the pp * tp ranks of a replica (token broadcast)
  LinkScope world = LinkScope::IntraNode;     // every rank (the per-step agreement)
};

// `plan` must be valid for `config` (plan_problem empty); ranks fill nodes of ranks_per_node in
// rank order, as mpirun places them.
PlanGeometry plan_geometry(const ModelConfig& config, const Plan& plan, int ranks_per_node);

}  // namespace moetron
