// The plan is decided once: rank 0 resolves --plan (explicit or auto) and every rank takes it,
// so ranks with different views (memory, ranks on their node) cannot run different plans.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "moetron/comm/communicator.hpp"
#include "moetron/parallel/plan.hpp"

namespace moetron {

// Collective over `world`. The memory a plan must fit is the smallest of the ranks'
// memory_here.bytes_per_rank (ranks passing 0, unknown, are left out): a plan must fit every
// rank. Rank 0 resolves `text` with it, its own run shape and ranks_per_node (resolve_plan) and
// broadcasts the plan, or its error message, which every rank then throws as Error: no rank is
// left waiting. For "auto", `choose_auto` (when given; rank 0 calls it with the agreed budget)
// replaces choose_auto_plan, e.g. by the performance predictor (engine/plan_choice.hpp); its
// plan is validated like an explicit one.
using AutoPlanChooser = std::function<Plan(const MemoryBudget& agreed)>;
Plan agree_plan(Communicator& world, const std::string& text, const ModelConfig& config,
                const MemoryBudget& memory_here, int ranks_per_node,
                const AutoPlanChooser& choose_auto = nullptr);

}  // namespace moetron
