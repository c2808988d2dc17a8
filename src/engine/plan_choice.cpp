#include "moetron/engine/plan_choice.hpp"

#include <algorithm>
#include <cctype>
#include <iomanip>
#include <memory>
#include <optional>
#include <sstream>

#include "moetron/bench/profile_file.hpp"
#include "moetron/core/format.hpp"
#include "moetron/predict/plan_costs.hpp"
#include "moetron/predict/predictor.hpp"
#include "moetron/predict/workload.hpp"

namespace moetron {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

constexpr size_t kLoggedPlans = 5;

std::string describe_prediction(size_t place, const PlanPrediction& p) {
  std::ostringstream os;
  os << std::setprecision(3) << "  #" << place + 1 << " " << p.plan.to_string() << ": "
     << p.output_tokens_per_s << " output tok/s (ceiling " << p.ceiling.output_tokens_per_s << "), TTFT "
     << p.ttft_s * 1e3 << " ms, ITL " << p.itl_s * 1e3
     << " ms, memory/rank " << human_bytes(static_cast<double>(p.memory.total())) << ", batch " << p.batch
     << " (" << p.batch_limit << "), bottleneck " << p.bottleneck;
  return os.str();
}

}  // namespace

HardwareFigures hardware_for_device(const std::string& backend, const std::string& device_name,
                                    std::string* note) {
  if (backend == "cpu") return hardware_preset("cpu");
  const std::string name = lower(device_name);
  for (const std::string& preset : hardware_preset_names())
    if (preset != "cpu" && name.find(preset) != std::string::npos) return hardware_preset(preset);
  if (note) *note = "no hardware preset for '" + device_name + "': predicting with the h100 figures";
  return hardware_preset("h100");
}

PlanRanking rank_plans(const PlanChoiceInputs& in) {
  const ModelConfig& config = *in.config;
  Workload base;
  base.max_batch = in.max_batch;
  base.max_batch_tokens = in.max_batch_tokens;
  base.block_size = in.memory.run.block_size;
  const Workload workload = workload_from_requests(*in.requests, base, "--prompts");
  Cluster cluster;
  cluster.ranks = in.world_size;
  cluster.ranks_per_node = in.ranks_per_node;
  cluster.memory_per_rank = in.memory.bytes_per_rank;
  cluster.device_groups_through_host = in.device_groups_through_host;
  cluster.ranks_per_device = in.ranks_per_device;
  PlanRanking out;
  out.figures = in.hardware.name + " figures";
  if (in.profile != nullptr) {
    ProfileUse use;
    use.model = &config;
    use.world_size = in.profile_of_any_world ? 0 : in.world_size;
    use.ranks_per_node = in.profile_of_any_world ? 0 : in.ranks_per_node;
    use.device = in.device_name;
    use.backend = in.backend;
    use.kernels = in.kernels;
    check_profile_matches(*in.profile, use, in.profile_name);
  }
  const PlanCosts costs(in.hardware, in.profile);
  if (costs.measured()) out.figures = in.profile_name + " (" + costs.measured()->describe() + ")";
  PredictorOptions options;
  options.backend = in.backend;  // on CUDA, plans its kernels cannot run are refused
  options.ceiling = &costs.ceiling();
  out.ranking = predict_plans(config, workload, cluster, costs.estimate(), options);
  out.figures = describe(workload) + " on " + out.figures;
  out.ranks_per_device = in.ranks_per_device;
  if (in.ranks_per_device > 1) out.figures += "; " + describe_device_sharing(in.ranks_per_device);
  return out;
}

PlanChoice choose_plan_by_prediction(const PlanChoiceInputs& in) {
  const ModelConfig& config = *in.config;
  PlanChoice choice;
  choice.predicted = rank_plans(in);
  const std::vector<PlanPrediction>& ranking = choice.predicted.ranking;
  choice.log.push_back("--plan auto: " + std::to_string(ranking.size()) + " plans predicted for " +
                       choice.predicted.figures + "; the best:");
  for (size_t i = 0; i < ranking.size() && i < kLoggedPlans; ++i)
    choice.log.push_back(describe_prediction(i, ranking[i]));
  for (const PlanPrediction& p : ranking) {
    if (!p.fits) break;  // fitting plans come first
    if (!plan_problem(p.plan, config).empty() || !memory_problem(p.plan, config, in.memory).empty()) continue;
    choice.plan = p.plan;
    choice.explanation = explain_best(ranking);
    choice.log.push_back("--plan auto: " + choice.explanation);
    return choice;
  }
  choice.plan = choose_auto_plan(config, in.world_size, in.memory, in.ranks_per_node);
  choice.explanation = "no predicted plan passes the memory check; by preference " + choice.plan.to_string();
  choice.log.push_back("--plan auto: " + choice.explanation);
  return choice;
}

PlanPredictions prediction_records(const PlanRanking& predicted, const Plan& chosen,
                                   const std::string& explanation) {
  PlanPredictions out;
  out.figures = predicted.figures;
  out.chosen = chosen.to_string();
  out.explanation = explanation;
  out.ranks_per_device = predicted.ranks_per_device;
  for (const PlanPrediction& p : predicted.ranking) {
    PlanCandidateRecord c;
    c.plan = p.plan.to_string();
    c.fits = p.fits;
    c.refusal = p.refusal;
    c.output_tokens_per_s = p.output_tokens_per_s;
    c.decode_tokens_per_s = p.decode_tokens_per_s;
    c.prefill_tokens_per_s = p.prefill_tokens_per_s;
    c.decode_step_s = p.decode.total_s();
    c.ttft_s = p.ttft_s;
    c.itl_s = p.itl_s;
    c.memory_per_rank = p.memory.total();
    c.batch = p.batch;
    c.bottleneck = p.bottleneck;
    c.ceiling_output_tokens_per_s = p.ceiling.output_tokens_per_s;
    c.ceiling_decode_step_s = p.ceiling.decode.total_s();
    out.candidates.push_back(std::move(c));
  }
  return out;
}

}  // namespace moetron
