// Per-expert loads from an earlier run's results file (`moetron plan --routing FILE.h5`).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/model/config.hpp"

namespace moetron {

// /experts/tokens of a results file, [layers][experts], with the rows of dense layers dropped:
// [MoE layer][expert]. Errors name the file and say what does not match `config`.
std::vector<std::vector<int64_t>> read_expert_loads(const std::string& path, const ModelConfig& config);

}  // namespace moetron
