// `--plan auto` by prediction: rank 0 ranks every plan of the job with the performance predictor
// (predict/) and takes the best one that passes the engine's own checks. The policy lives here,
// where tests reach it; the apps layer only supplies the inputs.
#pragma once
#include <string>
#include <vector>

#include "moetron/bench/profile.hpp"
#include "moetron/io/prompts.hpp"
#include "moetron/io/results.hpp"
#include "moetron/model/config.hpp"
#include "moetron/parallel/memory_need.hpp"
#include "moetron/parallel/plan.hpp"
#include "moetron/predict/predictor.hpp"
#include "moetron/predict/roofline_cost_model.hpp"

namespace moetron {

// The roofline figures for the device a run is bound to: the preset whose name appears in the
// device's name ("NVIDIA H200" -> h200), "cpu" for the CPU backend. A device without a preset
// gets the h100 figures, and `note` says so (a profile measured by `moetron bench` is the
// better answer there).
HardwareFigures hardware_for_device(const std::string& backend, const std::string& device_name,
                                    std::string* note);

// What rank 0 knows when it picks the plan.
struct PlanChoiceInputs {
  const ModelConfig* config = nullptr;
  const std::vector<RequestSpec>* requests = nullptr;  // the workload
  int world_size = 1, ranks_per_node = 1;
  MemoryBudget memory;        // agreed over the ranks (the smallest rank's memory)
  HardwareFigures hardware;   // for the roofline cost model
  // `moetron bench`'s profile (checked against the model, world, device, backend and kernels):
  // its measurements answer, the roofline what it lacks. Null: the roofline alone. profile_name
  // names it in messages and in the predictions' figures (the --profile file, or the run's own).
  const HardwareProfile* profile = nullptr;
  std::string profile_name;
  std::string device_name, backend;  // what the profile must have been measured on
  std::string kernels;               // ... and with which kernels (Ops::kernel_settings)
  // An emulated rank's plan spans more ranks than the job: its profile's kernels are this
  // device's, its collectives (of fewer ranks) are not the plan's, so the world is not
  // checked and what the profile lacks comes from the roofline, as for `moetron plan`.
  bool profile_of_any_world = false;
  // The job's device groups talk MPI through host buffers (ranks share a GPU): decode steps then
  // run eagerly (can_record_decode), and the predictor prices them so.
  bool device_groups_through_host = false;
  // Ranks taking turns on each device (Cluster::ranks_per_device; device_setup's ranks_per_device).
  double ranks_per_device = 1;
  int64_t max_batch = 256, max_batch_tokens = 8192;
};

// Every plan of the job predicted, best first (predict_plans), and what the figures were.
struct PlanRanking {
  std::vector<PlanPrediction> ranking;
  std::string figures;  // "h200 figures", or "the profile FILE (...)"
  double ranks_per_device = 1;  // what the predictions assumed (PlanChoiceInputs::ranks_per_device)
};
PlanRanking rank_plans(const PlanChoiceInputs& in);

struct PlanChoice {
  Plan plan;
  PlanRanking predicted;
  std::string explanation;       // why the best wins
  std::vector<std::string> log;  // the top plans, their predictions and why the best wins
};

// The best predicted plan among those that the engine's checks accept (plan_problem and the
// memory check of memory_problem, the same as an explicit --plan gets); when the predictor finds
// none that fits, choose_auto_plan decides (and throws its error when nothing fits at all).
PlanChoice choose_plan_by_prediction(const PlanChoiceInputs& in);

// The results file's record of the predictions (docs/results-schema.md, /predictions).
PlanPredictions prediction_records(const PlanRanking& predicted, const Plan& chosen,
                                   const std::string& explanation);

}  // namespace moetron
