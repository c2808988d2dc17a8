// `moetron plan --explain PLAN`: one plan's decode and prefill steps op by op, as step_cost priced
// them (StepTrace), to set beside what a profiler measures of the same rank's kernels.
#pragma once
#include <string>

#include "moetron/predict/predictor.hpp"

namespace moetron {

struct PlanExplanation {
  PlanPrediction prediction;  // as predict_plans makes it
  StepTrace decode, prefill;  // the same steps, traced
};

// The plan `text` names (the syntax of --plan), checked against the model and the cluster's
// ranks; an Error naming --explain otherwise.
Plan explained_plan(const std::string& text, const ModelConfig& config, const Cluster& cluster);

// The plan's prediction with its steps traced; an Error naming --explain when it does not fit.
PlanExplanation explain_plan(const ModelConfig& config, const Plan& plan, const Workload& workload,
                             const Cluster& cluster, const CostModel& cost, const PredictorOptions& options);

// What the ops of the reported step add up to: the reported stage's and the step's own.
StepCost reported_sum(const StepTrace& trace);

// The explanation as text: which rank it prices, then per step one row per distinct op (name,
// shape, source) in the order the forward runs them, and the totals against the ops' sums.
std::string format_explanation(const PlanExplanation& explanation);

}  // namespace moetron
