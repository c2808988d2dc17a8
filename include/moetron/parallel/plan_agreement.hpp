// The plan is decided once: rank 0 resolves --plan (explicit or auto) and every rank takes it,
// so ranks with different views (memory, ranks on their node) cannot run different plans.
#pragma once
#include <cstdint>
#include <string>

#include "moetron/comm/communicator.hpp"
#include "moetron/parallel/plan.hpp"

namespace moetron {

// Collective over `world`. The memory a plan must fit is the smallest of the ranks'
// memory_here.bytes_per_rank (ranks passing 0, unknown, are left out): a plan must fit every
// rank. Rank 0 resolves `text` with it, its own run shape and ranks_per_node (resolve_plan) and
// broadcasts the plan, or its error message, which every rank then throws as Error: no rank is
// left waiting.
Plan agree_plan(Communicator& world, const std::string& text, const ModelConfig& config,
                const MemoryBudget& memory_here, int ranks_per_node);

}  // namespace moetron
