// Setting up one rank of `moetron run`: its shard of the model and its step arena. The backend,
// GPU binding, memory budget, Ops and transports are in moetron/engine/device_setup.hpp.
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

ShardSpec shard_from_layout(const ShardLayout& l, const ModelConfig& c, const Plan& plan);
size_t step_arena_bytes(const ModelConfig& c, const ShardSpec& s, const Plan& plan,
                        int64_t max_tokens, int64_t max_seqs);

}  // namespace moetron::apps
