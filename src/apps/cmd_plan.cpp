// `moetron plan`: rank every plan of a model on a cluster (which need not be at hand) by the
// predictor, print the best ones and why the first wins, optionally save them all as HDF5.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "option_parsing.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
#include "moetron/bench/profile_file.hpp"
#include "moetron/io/input_files.hpp"
#include "moetron/io/output_file.hpp"
#include "moetron/io/prompts.hpp"
#include "moetron/model/config.hpp"
#include "moetron/predict/explain.hpp"
#include "moetron/predict/prediction_file.hpp"
#include "moetron/predict/plan_costs.hpp"
#include "moetron/predict/predictor.hpp"
#include "moetron/predict/routing_file.hpp"

namespace po = boost::program_options;

namespace moetron::apps {
namespace {

struct PlanOptions {
  std::string model, hardware = "h200", hardware_set, interconnect, memory_per_rank, prompts, routing, out, profile,
      explain;
  int64_t ranks = 0, ranks_per_node = 0, top = 10, micro_batches = 0;
  double memory_fraction = 0.9, ranks_per_device = 1;
  Workload workload;
};

po::options_description plan_options(PlanOptions& o) {
  Workload& w = o.workload;
  po::options_description d("moetron plan: predict and rank every parallel plan of a model on a cluster");
  d.add_options()
      ("help,h", "describe the options")
      ("model", po::value(&o.model)->required(), "checkpoint directory (only its config.json is read)")
      ("ranks", po::value(&o.ranks)->required(), "ranks (GPUs) in the cluster")
      ("ranks-per-node", po::value(&o.ranks_per_node)->required(), "ranks on each node")
      ("ranks-per-device", po::value(&o.ranks_per_device)->default_value(o.ranks_per_device),
       "ranks taking turns on one device: 2 for two ranks on each GPU (their groups then go through host "
       "memory and share the GPU's memory); for CPU ranks, ranks x threads over the node's cores")
      ("memory-per-rank", po::value(&o.memory_per_rank),
       "device memory of a rank (bytes, or 80GB, 141GiB...; default: the profile's, else the hardware's)")
      ("profile", po::value(&o.profile),
       "hardware profile of `moetron bench` for this model: kernels and the groups it measured from it, "
       "other groups from --hardware and --interconnect")
      ("hardware", po::value(&o.hardware)->default_value(o.hardware),
       "hardware figures of the roofline model (with --profile: for what the profile did not measure): "
       "h200, h100, a100 or cpu")
      ("hardware-set", po::value(&o.hardware_set),
       "override figures: gemm_tflops=,hbm_tbps=,launch_us=,graph_node_us=,memory_gib=,reserved_gib=,cache_mib= "
       "(the last-level cache, which only the ceiling uses)")
      ("interconnect", po::value(&o.interconnect),
       "bus bandwidth (GB/s) and latency (us) of groups inside a node and across nodes: intra=GBps:us,inter=GBps:us")
      ("prompt-tokens", po::value(&w.prompt_tokens)->default_value(w.prompt_tokens), "prompt length of each request")
      ("output-tokens", po::value(&w.output_tokens)->default_value(w.output_tokens), "tokens each request generates")
      ("requests", po::value(&w.requests)->default_value(w.requests), "requests in the workload")
      ("arrival-rate", po::value(&w.arrival_rate)->default_value(w.arrival_rate),
       "requests per second over the cluster (0: all at once)")
      ("prompts", po::value(&o.prompts),
       "prompts file: the workload's request count and mean lengths (instead of --prompt-tokens, --requests)")
      ("max-batch", po::value(&w.max_batch)->default_value(w.max_batch), "most sequences in one step (as moetron run)")
      ("max-batch-tokens", po::value(&w.max_batch_tokens)->default_value(w.max_batch_tokens),
       "most tokens in one step (as moetron run)")
      ("block-size", po::value(&w.block_size)->default_value(w.block_size), "tokens per KV-cache block")
      ("gpu-memory-fraction", po::value(&o.memory_fraction)->default_value(o.memory_fraction),
       "share of the memory left after weights and temporaries that the KV cache takes (as moetron run)")
      ("micro-batches", po::value(&o.micro_batches)->default_value(o.micro_batches),
       "rank pipeline plans (pp > 1) with this many micro-batches a step only (0: each pipeline layout with 1, pp "
       "and 2 pp, mb=M in its name where M is not pp)")
      ("routing", po::value(&o.routing), "results file of an earlier run: its per-expert loads (/experts/tokens)")
      ("top", po::value(&o.top)->default_value(o.top), "plans to print")
      ("out", po::value(&o.out), "write every plan's prediction to this HDF5 file (atomically)")
      ("explain", po::value(&o.explain),
       "PLAN (as --plan of moetron run, e.g. pp=1,tp=16,dp=1,ep=8): also print that plan's decode and prefill "
       "steps op by op as priced (shape, count, profile table or roofline, microseconds) and their totals");
  return d;
}

void check_plan_options(const PlanOptions& o, const po::variables_map& vm) {
  MOETRON_CHECK(o.ranks >= 1 && o.ranks <= (1 << 20), "--ranks must be in [1, 2^20], got " << o.ranks);
  MOETRON_CHECK(o.ranks_per_node >= 1 && o.ranks_per_node <= o.ranks,
                "--ranks-per-node must be in [1, --ranks], got " << o.ranks_per_node);
  MOETRON_CHECK(o.ranks_per_device >= 1 && o.ranks_per_device <= static_cast<double>(o.ranks_per_node),
                "--ranks-per-device must be in [1, --ranks-per-node], got " << o.ranks_per_device);
  MOETRON_CHECK(o.top >= 1, "--top must be at least 1, got " << o.top);
  MOETRON_CHECK(o.micro_batches >= 0 && o.micro_batches <= kMaxMicroBatches,
                "--micro-batches must be in [0, " << kMaxMicroBatches << "], got " << o.micro_batches);
  MOETRON_CHECK(o.memory_fraction > 0 && o.memory_fraction <= 1, "--gpu-memory-fraction must be in (0, 1]");
  for (const char* given : {"prompt-tokens", "requests"})
    MOETRON_CHECK(o.prompts.empty() || vm[given].defaulted(),
                  "--prompts gives the workload's lengths and count: leave out --" << given);
  check_workload(o.workload);
}

HardwareFigures hardware_figures(const PlanOptions& o) {
  HardwareFigures f = hardware_preset(o.hardware);
  if (!o.hardware_set.empty()) apply_hardware_overrides(f, o.hardware_set);
  if (!o.interconnect.empty()) apply_interconnect(f, o.interconnect);
  if (!o.memory_per_rank.empty())
    f.memory_bytes = static_cast<int64_t>(parse_byte_size(o.memory_per_rank, "--memory-per-rank"));
  return f;
}

void print_ranking(const std::vector<PlanPrediction>& ranking, int64_t top) {
  std::printf("%4s  %-28s %12s %10s %12s %13s %9s %8s %10s %11s  %s\n", "#", "plan", "output tok/s", "ceiling",
              "decode tok/s", "prefill tok/s", "TTFT ms", "ITL ms", "mem/rank", "batch", "bottleneck");
  int64_t shown = 0;
  for (const PlanPrediction& p : ranking) {
    if (!p.fits || shown == top) break;
    const std::string batch = std::to_string(p.batch) + (p.batch_limit == "KV cache" ? " kv" : "");
    std::printf("%4lld  %-28s %12.0f %10.0f %12.0f %13.0f %9.2f %8.3f %10s %11s  %s\n",
                static_cast<long long>(++shown), p.plan.to_string().c_str(), p.output_tokens_per_s,
                p.ceiling.output_tokens_per_s, p.decode_tokens_per_s, p.prefill_tokens_per_s,
                p.ttft_s * 1e3, p.itl_s * 1e3, human_bytes(static_cast<double>(p.memory.total())).c_str(),
                batch.c_str(), p.bottleneck.c_str());
  }
}

// How many plans were refused, with the first one's reason.
std::string refusals(const std::vector<PlanPrediction>& ranking) {
  int64_t refused = 0;
  const PlanPrediction* first = nullptr;
  for (const PlanPrediction& p : ranking)
    if (!p.fits && refused++ == 0) first = &p;
  if (refused == 0) return "every plan fits";
  return std::to_string(refused) + " do not fit (e.g. " + first->plan.to_string() + ": " + first->refusal + ")";
}

}  // namespace

int plan_command(const std::vector<std::string>& args) {
  PlanOptions o;
  const po::options_description options = plan_options(o);
  po::variables_map vm;
  if (!parse_options("plan", args, options, vm)) return 0;
  check_plan_options(o, vm);
  const std::string config_path = (std::filesystem::path(o.model) / "config.json").string();
  if (!o.out.empty()) {
    check_output_writable(o.out);
    check_output_not_input(o.out, {config_path, o.prompts, o.routing, o.profile});
  }
  const ModelConfig config = load_model_config(config_path);
  // The profile's kernels and collectives, with the roofline's answers for what it lacks.
  std::optional<HardwareProfile> profile;
  if (!o.profile.empty()) {
    profile = load_profile(o.profile);
    ProfileUse use;
    use.model = &config;
    check_profile_matches(*profile, use, o.profile);
  }
  if (!o.prompts.empty()) o.workload = workload_from_requests(read_prompts(o.prompts), o.workload, o.prompts);
  HardwareFigures figures = hardware_figures(o);
  // The backend the plans will run on: the profile's, else the CPU's for --hardware cpu, else CUDA.
  const std::string backend = profile ? profile->origin.backend : o.hardware == "cpu" ? "cpu" : "cuda";
  if (profile && o.memory_per_rank.empty()) figures.memory_bytes = profile->origin.memory_bytes;
  else if (o.memory_per_rank.empty() && backend == "cuda")  // ranks sharing a GPU share its memory
    figures.memory_bytes = static_cast<int64_t>(static_cast<double>(figures.memory_bytes) / o.ranks_per_device);
  const PlanCosts costs(figures, profile ? &*profile : nullptr);
  const CostModel& cost = costs.estimate();
  const std::string hardware =
      costs.measured() ? costs.measured()->describe() + "; roofline " + describe(figures) : describe(figures);
  Cluster cluster{static_cast<int>(o.ranks), static_cast<int>(o.ranks_per_node), figures.memory_bytes,
                  figures.reserved_bytes};
  cluster.ranks_per_device = o.ranks_per_device;
  // GPUs serving several ranks put the groups on MPI through host buffers (DeviceBinding::transport).
  cluster.device_groups_through_host = backend == "cuda" && o.ranks_per_device > 1;
  PredictorOptions predictor;
  predictor.micro_batches = static_cast<int>(o.micro_batches);
  predictor.kv_memory_fraction = o.memory_fraction;
  predictor.ceiling = &costs.ceiling();
  predictor.backend = backend;
  if (!o.routing.empty())
    predictor.expert_shares = expert_shares_from_counts(config, read_expert_loads(o.routing, config), o.routing);

  // The plan to explain is checked before any ranking is printed: a bad one ends the command.
  std::optional<PlanExplanation> explanation;
  if (vm.count("explain"))
    explanation = explain_plan(config, explained_plan(o.explain, config, cluster), o.workload, cluster, cost, predictor);

  const auto start = std::chrono::steady_clock::now();
  const std::vector<PlanPrediction> ranking = predict_plans(config, o.workload, cluster, cost, predictor);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  const int64_t nodes = (o.ranks + o.ranks_per_node - 1) / o.ranks_per_node;
  std::cout << "model     " << o.model << ": " << family_name(config.family) << ", " << config.num_layers
            << " layers, " << config.num_experts << " experts, top-" << config.top_k << "\n"
            << "cluster   " << o.ranks << " ranks (" << nodes << " nodes x " << o.ranks_per_node << ")"
            << (o.ranks_per_device > 1 ? ", " + describe_device_sharing(o.ranks_per_device) : "") << "\n"
            << "hardware  " << hardware << "\n"
            << "workload  " << describe(o.workload)
            << (o.routing.empty() ? ", uniform routing" : ", expert loads of " + o.routing) << "\n"
            << "plans     " << ranking.size() << " ranked in " << ms << " ms; " << refusals(ranking) << "\n"
            << "ceiling   " << describe(costs.ceiling().figures()) << "\n"
            << (costs.measured() ? "Predictions from a profile are estimates centred on what the engine measures "
                                   "(perf/PREDICTOR.md: median |error| 3-6% in the H200 validations); "
                                 : "Predictions from roofline figures are upper bounds: every time is a floor; ")
            << "'ceiling' prices the same steps at the ceiling's figures, a bound no run beats "
               "(docs/design-notes.md, 'The predictor').\n\n";
  print_ranking(ranking, o.top);
  std::cout << "\n" << explain_best(ranking) << "\n";
  if (explanation) std::cout << "\n" << format_explanation(*explanation);
  if (!o.out.empty()) {
    std::string command_line = "moetron plan";
    for (const std::string& a : args) command_line += " " + a;
    write_predictions(o.out, ranking,
                      {{"model_config", config.to_json().dump()}, {"hardware", hardware}, {"profile", o.profile},
                       {"workload", describe(o.workload)}, {"command_line", command_line},
                       {"cluster", std::to_string(o.ranks) + " ranks, " + std::to_string(o.ranks_per_node) + " per node"},
                       {"best_plan", ranking.empty() || !ranking[0].fits ? "" : ranking[0].plan.to_string()},
                       {"explanation", explain_best(ranking)}});
    std::cout << "wrote " << o.out << "\n";
  }
  return ranking.empty() || !ranking[0].fits ? 1 : 0;
}

}  // namespace moetron::apps
