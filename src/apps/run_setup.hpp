// Setting up one rank of `moetron run`: its backend, memory, shard of the model and the
// transports of its groups.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "moetron/backend/ops.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weights.hpp"
#include "moetron/parallel/groups.hpp"
#include "run_options.hpp"

namespace moetron::apps {

// "auto" becomes cuda where a GPU is visible, else cpu; an impossible request is an Error.
std::string resolve_backend(const std::string& requested);
// This rank's index among the ranks of its node, and how many they are.
int node_local_rank(int* ranks_on_node);
int64_t memory_per_rank(const RunOptions& o, const std::string& backend, int local_rank, int ranks_on_node);
std::unique_ptr<Ops> make_ops(const std::string& backend, int local_rank, size_t arena_bytes);
void use_device_transport(ParallelGroups& g, Ops& ops, int ranks_on_node);

}  // namespace moetron::apps
