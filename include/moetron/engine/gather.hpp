// Brings every replica's finished sequences to world rank 0, which writes the results file.
#pragma once
#include <vector>

#include "moetron/comm/communicator.hpp"
#include "moetron/engine/scheduler.hpp"

namespace moetron {

// `reporters[d]` is the world rank that holds replica d's complete sequences (its last stage,
// tp rank 0: the only rank with their logits). Collective over `world`. On rank 0, returns all
// sequences sorted by prompts-file index; elsewhere an empty vector.
std::vector<Sequence> gather_sequences(Communicator& world, const std::vector<int>& reporters,
                                       std::vector<Sequence>& mine);

}  // namespace moetron
