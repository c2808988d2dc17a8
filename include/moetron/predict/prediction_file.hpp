// `moetron plan --out FILE.h5`: every candidate plan with its prediction, and what it was
// predicted for. Layout: docs/plan-predictions.md.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "moetron/predict/predictor.hpp"

namespace moetron {

// Written atomically (a temporary file, renamed): `path` is whole or untouched. `attributes`
// become string attributes of the root (model config, hardware, workload, cluster, command line).
void write_predictions(const std::string& path, const std::vector<PlanPrediction>& ranking,
                       const std::map<std::string, std::string>& attributes);

}  // namespace moetron
