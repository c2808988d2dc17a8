// moetron run: load a model (or its shard, under a parallel plan), generate for every request
// of a prompts file, write the results file. Every rank runs this; rank 0 writes the file.
#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "moetron/bench/profile_file.hpp"
#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
#include "moetron/core/log.hpp"
#include "moetron/engine/device_setup.hpp"
#include "moetron/engine/job_profile.hpp"
#include "moetron/engine/plan_choice.hpp"
#include "moetron/engine/rank_emulation.hpp"
#include "moetron/engine/run_session.hpp"
#include "moetron/io/input_files.hpp"
#include "moetron/io/prompts.hpp"
#include "moetron/io/results.hpp"
#include "moetron/model/config.hpp"
#include "moetron/parallel/expert_replicas.hpp"
#include "moetron/parallel/plan_agreement.hpp"
#include "run_options.hpp"
#include "run_report.hpp"
#ifdef MOETRON_HAVE_CUDA
#include "moetron/backend/gpu_activity.hpp"
#include "moetron/backend/profiler_window.hpp"
#endif

namespace moetron::apps {
namespace {

RunSettings settings_from(const RunOptions& o) {
  RunSettings settings;
  settings.model_dir = o.model;
  settings.dummy_weights = o.load_format == "dummy";
  if (!o.routing_skew.empty()) settings.routing_skew = parse_routing_skew(o.routing_skew);
  settings.routing_window = o.routing_window;
  settings.redundant_experts = o.redundant_experts;
  settings.weights_seed = o.seed;
  settings.max_batch = o.max_batch;
  settings.max_batch_tokens = o.max_batch_tokens;
  settings.prefill_chunk = o.prefill_chunk;
  settings.itl_target_ratio = o.itl_target_ratio;
  settings.admission = o.admission;
  settings.block_size = o.block_size;
  settings.kv_cache_tokens = o.kv_cache_tokens;
  settings.gpu_memory_fraction = o.gpu_memory_fraction;
  settings.save_logits = o.save_logits;
  settings.no_graphs = o.no_graphs;
  settings.defaults.ignore_eos = o.ignore_eos;
  settings.defaults.sampling.temperature = o.temperature;
  settings.defaults.sampling.top_k = o.top_k;
  settings.defaults.sampling.top_p = o.top_p;
  settings.defaults.sampling.seed = o.seed;
  return settings;
}

// What every plan must fit on this rank: its memory and what the run will put there.
MemoryBudget memory_budget(const RunOptions& o, const RunSettings& settings, const std::string& backend,
                           const DeviceBinding& binding, const std::vector<RequestSpec>& specs) {
  MemoryBudget budget;
  budget.bytes_per_rank = memory_per_rank(o.memory_per_rank, backend, binding, &budget.source);
  budget.storage = backend_storage(backend);
  budget.run = run_shape(settings, backend, specs);
  return budget;
}

// --plan auto among several ranks' plans without --profile: the bootstrap rank's measurement of
// this job's machines (collective: every rank calls it), whole on rank 0.
HardwareProfile bootstrap_profile(const RunOptions& o, const ModelConfig& config, const std::string& backend,
                                  const DeviceBinding& binding, int world_rank) {
  JobProfileSettings s;
  s.sizes.quick = o.bootstrap_bench == "quick";
  s.command_line = o.command_line;
  // A line a family: the bench takes seconds to a minute, and a silent start reads as a hang.
  s.report = [](const std::string& line) { LOG_INFO("bootstrap bench: " << line); };
  if (world_rank == 0)
    LOG_INFO("bootstrap bench (" << o.bootstrap_bench << "): measuring this job's machines before choosing the plan "
                                 << "(--profile FILE skips it, --bootstrap-bench quick measures less)");
  const auto start = std::chrono::steady_clock::now();
  HardwareProfile profile = measure_job_profile(config, backend, binding, s);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (world_rank == 0)
    LOG_INFO("bootstrap bench (" << o.bootstrap_bench << "): " << profile.origin.device << "'s kernels with the model's "
                                 << "shapes and collectives over " << profile.origin.world_size << " ranks measured in " << seconds
                                 << " s; the results file keeps the profile (/profile: --profile FILE reuses it, "
                                 << "--bootstrap-bench quick|off measures less)");
  return profile;
}

// What the results file records of the predictor: --plan auto's ranking, or for an explicit plan
// a ranking made now (a failure there costs the record, not the run).
PlanPredictions record_predictions(const std::optional<PlanChoice>& auto_choice,
                                   const std::function<PlanChoiceInputs()>& inputs, const Plan& plan) {
  if (auto_choice) return prediction_records(auto_choice->predicted, plan, auto_choice->explanation);
  try {
    return prediction_records(rank_plans(inputs()), plan, "");
  } catch (const std::exception& e) {
    LOG_WARN("no plan predictions in the results file: " << e.what());
    return {};
  }
}

// --redundant-experts without --expert-loads: the loads of a warm-up run without replicas, of the
// same requests each cut to a few new tokens and arriving at once (prefill and the first decode
// steps route like the run), measured on every rank. Nothing of it is written. An emulated rank
// measures its own replica's loads on its own layers: under emulation's assumption (every replica
// routes as this one) the world's loads are these times dp, and the placement is scale-free.
std::vector<int64_t> warmup_expert_loads(const ModelConfig& config, const std::vector<RequestSpec>& specs,
                                         const RunSettings& settings, const DeviceAccess& device) {
  constexpr int64_t kWarmupNewTokens = 4;
  check_redundant_experts(settings.redundant_experts, settings.plan.to_string(), settings.plan.ep);
  std::vector<RequestSpec> warm_specs = specs;
  for (RequestSpec& r : warm_specs) {
    r.max_new_tokens = std::min(r.max_new_tokens, kWarmupNewTokens);
    r.arrival_s.reset();
  }
  RunSettings warm = settings;
  warm.redundant_experts = 0;
  warm.observer = nullptr;
  // Only a replica's tp rank 0 counts its routing; every tp rank of it sees the same.
  if (warm.emulation.active()) {
    const Coords c = coords_of(settings.plan, warm.emulation.rank);
    warm.emulation.rank = rank_of(settings.plan, {c.pp, c.dp, 0});
  }
  LOG_INFO("redundant experts: measuring the expert loads in a warm-up of " << warm_specs.size() << " requests, "
                                                                             << kWarmupNewTokens << " new tokens each"
                                                                             << (settings.emulation.active()
                                                                                     ? " (the emulated rank's replica and layers)"
                                                                                     : ""));
  RunSession session(config, warm_specs, warm, device, MPI_COMM_WORLD);
  return session.run().expert_tokens;
}

int run(const RunOptions& o, int world_rank, int world_size) {
  const ModelConfig config = load_model_config(o.model + "/config.json");
  if (world_rank == 0) check_output_writable(o.out);
  if (world_rank == 0) check_output_not_input(o.out, run_input_files(o));
  std::vector<RequestSpec> specs = read_prompts(o.prompts);
  for (RequestSpec& r : specs)
    if (r.max_new_tokens < 0) r.max_new_tokens = o.max_new_tokens;
  validate_requests(specs, config.vocab_size, config.max_position_embeddings, o.prompts);
  const std::string backend = resolve_backend(o.backend);
  MOETRON_CHECK(!o.measure_gpu_idle || backend == "cuda",
                "--measure-gpu-idle needs the cuda backend (this run uses " << backend << ")");
  MOETRON_CHECK(o.profile_decode_steps.empty() || backend == "cuda",
                "--profile-decode-steps needs the cuda backend (this run uses " << backend << ")");
  MOETRON_CHECK(o.profile_decode_steps.empty() || !o.measure_gpu_idle,
                "--profile-decode-steps and --measure-gpu-idle exclude each other (a profiler and CUPTI "
                "tracing cannot both hold the GPU's counters)");

  const Emulation emulation{o.emulate_rank, o.emulate_world, parse_emulated_peers(o.emulate_peers)};
  const std::string emulation_refused =
      emulation_problem(o.emulate_rank_given, o.emulate_world_given, emulation, o.plan, world_size);
  MOETRON_CHECK(emulation_refused.empty(), emulation_refused);
  MOETRON_CHECK(!o.emulate_peers_given || o.emulate_rank_given,
                "--emulate-peers needs --emulate-rank R --emulate-world N (it says how emulated peers route)");
  // An emulated rank is predicted and described as one rank of its plan's world, on nodes of
  // up to kEmulatedNodeRanks ranks.
  constexpr int kEmulatedNodeRanks = 8;
  const int plan_world = emulation.active() ? emulation.world : world_size;

  const DeviceBinding binding = bind_rank_devices(MPI_COMM_WORLD, backend);
  const std::string kernels = kernel_settings_by_env(backend);  // "" on the CPU
  // What rank 0 predicts from: --profile's profile, or where --plan auto chooses among several
  // ranks' plans, one the job measures first; the results file keeps it (/profile).
  std::optional<HardwareProfile> profile;
  std::string profile_name;
  if (!o.profile.empty()) {
    if (world_rank == 0) profile = load_profile(o.profile);
    profile_name = "the profile " + o.profile;
  } else if (o.plan == "auto" && world_size > 1 && o.bootstrap_bench != "off") {
    profile = bootstrap_profile(o, config, backend, binding, world_rank);
    if (world_rank != 0) profile.reset();
    profile_name = "the profile this run measured (/profile)";
  }
  RunSettings settings = settings_from(o);
  settings.emulation = emulation;
  settings.warm_up = o.warmup == "on" || (o.warmup == "auto" && backend == "cuda");
  // Every rank reads the loads, so that every rank places the replicas alike.
  if (!o.expert_loads.empty())
    settings.expert_loads = read_expert_loads(o.expert_loads, config.num_layers, config.num_experts);
  const MemoryBudget budget = memory_budget(o, settings, backend, binding, specs);
  const int ranks_per_node = emulation.active() ? std::min(plan_world, kEmulatedNodeRanks) : binding.ranks_on_node;
  // Rank 0 predicts every plan of the job: to choose one (--plan auto) and, either way, to record
  // the predictions beside what the run measures (/predictions).
  const auto choice_inputs = [&](const MemoryBudget& memory) {
    PlanChoiceInputs in;
    in.config = &config;
    in.requests = &specs;
    in.world_size = plan_world;
    in.ranks_per_node = ranks_per_node;
    in.memory = memory;
    in.device_name = identify_device(backend, binding).name;
    std::string note;
    in.hardware = hardware_for_device(backend, in.device_name, &note);
    if (!note.empty()) LOG_WARN(note);
    in.max_batch = o.max_batch;
    in.max_batch_tokens = o.max_batch_tokens;
    in.profile = profile ? &*profile : nullptr;
    in.profile_name = profile_name;
    in.profile_of_any_world = emulation.active();
    // An emulated rank's groups are local copies (recordable); real ones follow the binding.
    in.device_groups_through_host = !emulation.active() && binding.transport == "mpi";
    // An emulated rank has its device to itself, whatever the plan's ranks would share.
    in.ranks_per_device = emulation.active() ? 1 : ranks_per_device(backend, binding);
    in.backend = backend;
    in.kernels = kernels;
    return in;
  };
  std::optional<PlanChoice> auto_choice;  // rank 0, --plan auto
  const AutoPlanChooser by_prediction = [&](const MemoryBudget& agreed) {
    auto_choice = choose_plan_by_prediction(choice_inputs(agreed));
    for (const std::string& line : auto_choice->log) LOG_INFO(line);
    return auto_choice->plan;
  };
  if (emulation.active()) {
    settings.plan = parse_plan(o.plan);
    validate_plan(settings.plan, config, plan_world, budget);
  } else {
    settings.plan = agree_plan(*make_mpi_communicator(MPI_COMM_WORLD, "world"), o.plan, config,
                               budget, binding.ranks_on_node, by_prediction);
  }
  validate_plan_for_backend(settings.plan, config, backend);
  PlanPredictions predictions;
  if (world_rank == 0)
    predictions = record_predictions(auto_choice, [&] { return choice_inputs(budget); }, settings.plan);
  const Plan& plan = settings.plan;
  LOG_INFO("model " << family_name(config.family) << " from " << o.model << ", " << specs.size()
                    << " requests, backend " << backend << ", plan " << plan.to_string() << " on "
                    << plan_world << " rank(s)" << (emulation.active() ? " (emulated)" : ""));
  if (world_rank == 0) {
    const RankNeed most = largest_memory_need(plan, config, budget.storage, budget.run);
    LOG_INFO("memory: rank " << most.rank << " needs " << human_bytes(static_cast<double>(most.need.total()))
                             << " (" << describe_need(most.need, budget.storage, budget.run) << "); rank 0 has "
                             << human_bytes(static_cast<double>(budget.bytes_per_rank)) << " (" << budget.source << ")");
  }
  if (world_rank == 0)
    for (int r = 0; r < plan_world; ++r)
      if (!emulation.active() || r == emulation.rank) LOG_INFO(describe(plan, layout_for(plan, config, r), r));

#ifdef MOETRON_HAVE_CUDA
  // Tracing starts before the decode graphs are instantiated, so their kernels are seen too.
  std::unique_ptr<GpuIdleObserver> idle_observer;
  std::unique_ptr<ProfilerWindow> profiler_window;  // excludes idle_observer (checked above)
  if (o.measure_gpu_idle && world_rank == 0) idle_observer = std::make_unique<GpuIdleObserver>();
  if (!o.profile_decode_steps.empty() && world_rank == 0)
    profiler_window = std::make_unique<ProfilerWindow>(
        parse_decode_step_range(o.profile_decode_steps, "--profile-decode-steps"));
  settings.observer = idle_observer ? static_cast<StepObserver*>(idle_observer.get()) : profiler_window.get();
#endif
  DeviceAccess device;
  device.make_ops = [&](size_t arena_bytes) { return make_ops(backend, binding, arena_bytes); };
  device.bind_transports = [&](ParallelGroups& g, Ops& ops) { use_device_transport(g, ops, binding); };
  device.gpu_uuid = binding.uuid;
  device.ranks_sharing_device = binding.ranks_sharing_device;
  device.storage = backend_storage(backend);

  if (settings.redundant_experts > 0 && settings.expert_loads.empty())
    settings.expert_loads = warmup_expert_loads(config, specs, settings, device);
  RunSession session(config, specs, settings, device, MPI_COMM_WORLD);
  const RunOutcome outcome = session.run();
  if (world_rank != 0) return 0;
  const std::vector<Sequence>& all = outcome.finished;
  const EngineReport& report = outcome.report;

  RunFacts facts;
  facts.options = &o;
  facts.config = &config;
  facts.plan = plan;
  facts.backend = backend;
  facts.places = emulation.active() ? emulated_places(outcome.places, plan_world) : outcome.places;
  facts.world_size = plan_world;
  RunResults results = assemble_results(facts, specs, all, report, outcome.expert_tokens, outcome.traffic);
  if (emulation.active()) mark_emulated(results, emulation, plan);
  results.startup = outcome.startup;
  if (!kernels.empty()) results.meta.extra["kernels"] = kernels;  // which kernels these times are of
  results.predictions = predictions;
  if (profile && !predictions.candidates.empty())  // the profile the predictions rest on
    results.attachments.push_back(
        {"/profile", [&profile](h5::File& f, const std::string& group) { write_profile(f, group, *profile); }});
  add_expert_routing(results, outcome.routing, outcome.expert_work, o.routing_skew);
  add_comm_wait(results, outcome.comm_wait);
  results.redundant_experts = o.redundant_experts;
  results.replica_placement = outcome.replica_placement;
#ifdef MOETRON_HAVE_CUDA
  if (idle_observer) {
    const DecodeIdleSummary idle = idle_observer->summarize();
    LOG_INFO(format_decode_idle(idle));
    if (idle.decode_steps > 0) LOG_INFO(format_kernel_idle(idle));
    constexpr size_t kGapsLogged = 12;  // where the idle time falls: the largest gaps
    for (const std::string& line : idle_observer->gap_lines(kGapsLogged)) LOG_INFO(line);
    for (const auto& [name, value] : decode_idle_attributes(idle)) results.meta.extra[name] = value;
  }
#endif
  write_results(o.out, results);
  const RunSummary sum = summarize(results);
  LOG_INFO("done: " << sum.requests << " requests, " << sum.output_tokens << " tokens in "
                    << sum.total_seconds << " s (" << sum.output_tokens_per_s
                    << " output tok/s); results in " << o.out);
  LOG_INFO(describe_latency(sum));
  log_step_summary(report.steps);
  int64_t preemptions = 0;
  for (const Sequence& s : all) preemptions += s.preemptions;
  if (preemptions > 0)
    LOG_INFO("KV cache ran short: " << preemptions << " preemption(s), each request recomputed "
                                    << "when readmitted (/requests/preemptions; a larger "
                                    << "--kv-cache-tokens avoids them)");
  return 0;
}

}  // namespace

int run_command(const std::vector<std::string>& args) {
  RunOptions o;
  for (const std::string& a : args) o.command_line += (o.command_line.empty() ? "" : " ") + a;
  o.command_line = "moetron run " + o.command_line;
  boost::program_options::options_description desc = run_options(o);
  boost::program_options::variables_map vm;
  try {
    boost::program_options::store(boost::program_options::command_line_parser(args).options(desc).run(), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    boost::program_options::notify(vm);
  } catch (const boost::program_options::error& e) {
    MOETRON_FAIL("moetron run: " << e.what() << " (see 'moetron run --help')");
  }
  set_log_level(parse_log_level(o.log_level));
  check_options(o);
  WatchdogLimits limits;
  limits.timeout_s = o.collective_timeout;
  set_watchdog_limits(limits);

  MpiRuntime mpi(nullptr, nullptr);
  try {
    return run(o, mpi.world_rank(), mpi.world_size());
  } catch (const std::exception& e) {
    // One rank's failure must end every rank at once, never leave peers in a collective.
    if (mpi.world_size() > 1) abort_job(e.what());
    throw;
  }
}

}  // namespace moetron::apps
