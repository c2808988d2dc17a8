// Helpers shared by the predictor's unit tests (predictor, plan costs, explain).
#pragma once
#include <string>

#include "moetron/model/config.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/predict/workload.hpp"

namespace moetron::predictor_test {

// A real model's shape by its preset name (`moetron model make --preset`).
inline ModelConfig preset(Family family, const std::string& name) {
  return parse_model_config(hf_preset_json(family, name), name);
}

// A workload small enough for the tiny fixtures on a few ranks.
inline Workload small_workload() {
  Workload w;
  w.prompt_tokens = 16;
  w.output_tokens = 8;
  w.requests = 32;
  w.max_batch = 16;
  w.max_batch_tokens = 64;
  return w;
}

}  // namespace moetron::predictor_test
