// moetron run: load a model (or its shard, under a parallel plan), generate for every request
// of a prompts file, write the results file. Every rank runs this; rank 0 writes the file.
#include <algorithm>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#include "moetron/engine/decode_graphs.hpp"
#include "moetron/engine/engine.hpp"
#include "moetron/engine/gather.hpp"
#include "moetron/io/input_files.hpp"
#include "moetron/io/prompts.hpp"
#include "moetron/io/results.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weight_source.hpp"
#include "moetron/parallel/groups.hpp"
#include "run_options.hpp"
#include "run_report.hpp"
#include "run_setup.hpp"
#ifdef MOETRON_HAVE_CUDA
#include "moetron/backend/gpu_activity.hpp"
#endif

namespace moetron::apps {
namespace {

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

  int ranks_on_node = 1;
  const int local_rank = node_local_rank(&ranks_on_node);
  const Plan plan = resolve_plan(o.plan, config, world_size,
                                 memory_per_rank(o, backend, local_rank, ranks_on_node), ranks_on_node);
  ParallelGroups groups = build_groups(plan, config, MPI_COMM_WORLD);
  LOG_INFO("model " << family_name(config.family) << " from " << o.model << ", " << specs.size()
                    << " requests, backend " << backend << ", plan " << plan.to_string() << " on "
                    << world_size << " rank(s)");
  if (world_rank == 0)
    for (int r = 0; r < world_size; ++r)
      LOG_INFO(describe(plan, layout_for(plan, config, r), r));

  const ShardSpec shard = shard_from_layout(groups.layout, config, plan);
  int64_t longest_prompt = 0;
  for (const RequestSpec& r : specs)
    longest_prompt = std::max<int64_t>(longest_prompt, static_cast<int64_t>(r.prompt_tokens.size()));
  // A step holds at most --max-batch-tokens tokens, or one prompt longer than that alone.
  const int64_t max_step_tokens = std::max<int64_t>(o.max_batch_tokens, longest_prompt);
  std::unique_ptr<Ops> ops =
      make_ops(backend, local_rank, step_arena_bytes(config, shard, plan, max_step_tokens, o.max_batch));
  use_device_transport(groups, *ops, ranks_on_node);
  std::unique_ptr<WeightSource> source =
      o.load_format == "dummy" ? make_random_source(o.seed, DType::BF16) : open_checkpoint_source(o.model);
  const ModelWeights weights = load_weights(*source, config, shard, *ops);
  source.reset();
  LOG_INFO("weights loaded: " << weights.bytes / 1e6 << " MB on rank 0");

  // KV cache: blocks per replica. Every rank of a replica holds its layers' and heads' share
  // of the same block ids, so all must agree on the count: take the minimum over the world.
  const int64_t per_token = static_cast<int64_t>(weights.layers.size()) * 2 * shard.kv_head_count *
                            config.head_dim * static_cast<int64_t>(dtype_size(ops->activation_dtype()));
  int64_t kv_tokens = o.kv_cache_tokens;
  if (kv_tokens == 0) {
    const int64_t free_bytes = ops->free_memory_bytes();
    if (free_bytes >= 0) {
      kv_tokens = per_token > 0 ? static_cast<int64_t>(static_cast<double>(free_bytes) *
                                                       o.gpu_memory_fraction) / per_token
                                : 0;
    } else {
      for (const RequestSpec& r : specs)
        kv_tokens += static_cast<int64_t>(r.prompt_tokens.size()) + r.max_new_tokens + o.block_size;
    }
  }
  std::vector<int64_t> agreed = {-kv_tokens};
  groups.world->allreduce_host(agreed, /*max_instead_of_sum=*/true);
  kv_tokens = -agreed[0];
  EngineOptions eo;
  eo.limits.block_size = o.block_size;
  eo.limits.max_batch_seqs = o.max_batch;
  eo.limits.max_batch_tokens = o.max_batch_tokens;
  eo.kv_blocks = kv_tokens / o.block_size;
  eo.save_logits = o.save_logits;
  MOETRON_CHECK(eo.kv_blocks > 0, "no memory left for the KV cache (" << kv_tokens << " tokens)");

  ForwardContext fc;
  fc.config = &config;
  fc.ops = ops.get();
  fc.shard = &shard;
  fc.weights = &weights;
  fc.tp = groups.tp.get();
  fc.stage = plan.dp > 1 ? groups.stage.get() : nullptr;
  fc.expert_set_size = config.num_experts / plan.ep;
  fc.expert_shards = plan.expert_shards();
  fc.count_experts = groups.coords.tp == 0;
  fc.max_tokens = max_step_tokens;
  // One block more than the scheduler hands out: the scratch block that padded rows of a
  // recorded decode step write into.
  ModelForward forward(fc, eo.kv_blocks + 1, o.block_size);
  LOG_INFO("KV cache: " << eo.kv_blocks * o.block_size << " tokens per replica ("
                        << forward.kv_cache_bytes() / 1e6 << " MB on rank 0)");

  // This replica's requests: every dp-th one, in file order.
  std::vector<Sequence> mine;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (static_cast<int>(i % static_cast<size_t>(plan.dp)) != groups.coords.dp) continue;
    const RequestSpec& r = specs[i];
    Sequence s;
    s.index = static_cast<int64_t>(i);
    s.prompt = r.prompt_tokens;
    s.max_new_tokens = r.max_new_tokens;
    s.ignore_eos = r.ignore_eos.value_or(o.ignore_eos);
    s.sampling.temperature = r.temperature.value_or(o.temperature);
    s.sampling.top_k = r.top_k.value_or(o.top_k);
    s.sampling.top_p = r.top_p.value_or(o.top_p);
    s.sampling.seed = r.seed.value_or(o.seed + i);
    mine.push_back(std::move(s));
  }

  EngineGroups eg;
  eg.world = groups.world.get();
  eg.tp = groups.tp.get();
  eg.replica = groups.replica.get();
  eg.pipeline = groups.pipeline.get();
  eg.pp_rank = groups.coords.pp;
  eg.pp_size = plan.pp;
  eg.dp_rank = groups.coords.dp;
  eg.dp_size = plan.dp;
  eg.tp_rank = groups.coords.tp;
  eg.replica_root = (plan.pp - 1) * plan.tp;
  for (int d = 0; d < plan.dp; ++d) eg.reporters.push_back(rank_of(plan, {plan.pp - 1, d, 0}));
#ifdef MOETRON_HAVE_CUDA
  // Tracing starts before the decode graphs are instantiated, so their kernels are seen too.
  std::unique_ptr<GpuIdleObserver> idle_observer;
  if (o.measure_gpu_idle && world_rank == 0) idle_observer = std::make_unique<GpuIdleObserver>();
  eo.observer = idle_observer.get();
#endif
  // Decode steps are recorded (CUDA graphs) where nothing in a step waits for the host: one
  // stage, and device transports that can be recorded (NCCL or none) for the tp group and,
  // with several replicas, for the experts' all-to-all between them.
  std::unique_ptr<DecodeGraphs> graphs;
  const auto recordable = [](const Communicator* c) {
    return c == nullptr || c->transport() == "self" || c->transport() == "nccl";
  };
  if (!o.no_graphs && ops->can_record() && plan.pp == 1 && recordable(groups.tp.get()) &&
      recordable(fc.stage)) {
    // Replicas record the same buckets: the largest batch and the longest sequence of any.
    std::vector<int64_t> bounds = {static_cast<int64_t>(mine.size()), 0};
    for (const Sequence& s : mine) bounds[1] = std::max(bounds[1], s.total_tokens());
    groups.world->allreduce_host(bounds, /*max_instead_of_sum=*/true);
    const int64_t max_blocks = std::max<int64_t>((bounds[1] + o.block_size - 1) / o.block_size, 1);
    graphs = std::make_unique<DecodeGraphs>(*ops, forward, std::min<int64_t>(o.max_batch, std::max<int64_t>(bounds[0], 1)),
                                            max_blocks, o.block_size, static_cast<int32_t>(eo.kv_blocks),
                                            /*replicas_meet=*/plan.dp > 1);
    graphs->capture();
  } else if (backend == "cuda") {
    LOG_INFO("decode steps run eagerly (" << (o.no_graphs ? "--no-graphs" : "not recordable with this plan or transport") << ")");
  }
  Engine engine(config, *ops, forward, eg, eo, graphs.get());
  const EngineReport report = engine.run(mine);

  const std::vector<int64_t> expert_tokens = gather_expert_tokens(groups, forward, shard, config, fc.count_experts);
  const std::vector<int64_t> traffic = gather_traffic(groups, world_size);
  std::vector<Sequence> all = gather_sequences(*groups.world, eg.reporters, mine);
  if (world_rank != 0) return 0;

  RunFacts facts;
  facts.options = &o;
  facts.config = &config;
  facts.plan = plan;
  facts.backend = backend;
  facts.device = ops->name();
  facts.world_size = world_size;
  RunResults results = assemble_results(facts, specs, all, report, expert_tokens, traffic);
#ifdef MOETRON_HAVE_CUDA
  if (idle_observer) {
    const DecodeIdleSummary idle = idle_observer->summarize();
    LOG_INFO(format_decode_idle(idle));
    for (const auto& [name, value] : decode_idle_attributes(idle)) results.meta.extra[name] = value;
  }
#endif
  write_results(o.out, results);
  const RunSummary sum = summarize(results);
  LOG_INFO("done: " << sum.requests << " requests, " << sum.output_tokens << " tokens in "
                    << sum.total_seconds << " s (" << sum.output_tokens_per_s
                    << " output tok/s); results in " << o.out);
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
