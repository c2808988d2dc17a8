// moetron run: load a model (or its shard, under a parallel plan), generate for every request
// of a prompts file, write the results file. Every rank runs this; rank 0 writes the file.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cmath>
#include <map>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.hpp"
#include "moetron/backend/cpu_ops.hpp"
#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#include "moetron/engine/decode_graphs.hpp"
#include "moetron/engine/engine.hpp"
#include "moetron/engine/gather.hpp"
#include "moetron/io/prompts.hpp"
#include "moetron/io/results.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weight_source.hpp"
#include "moetron/parallel/groups.hpp"
#include "moetron/version.hpp"
#include "moetron/comm/staged_communicator.hpp"
#ifdef MOETRON_HAVE_CUDA
#include <cuda_runtime.h>

#include "moetron/backend/cuda_ops.hpp"
#include "moetron/backend/gpu_activity.hpp"
#include "moetron/comm/nccl_communicator.hpp"
#endif

namespace po = boost::program_options;

namespace moetron::apps {
namespace {

struct RunOptions {
  std::string model, prompts, out, backend = "auto", plan = "auto", load_format = "auto";
  std::string log_level = "info";
  int64_t max_new_tokens = 64;
  bool ignore_eos = false, save_logits = false, no_graphs = false, measure_gpu_idle = false;
  float temperature = 0.0f, top_p = 1.0f;
  int top_k = 0;
  uint64_t seed = 0;
  int64_t max_batch = 256, max_batch_tokens = 8192, kv_cache_tokens = 0, block_size = 16;
  double gpu_memory_fraction = 0.9;
  int64_t memory_per_rank = 0;
  std::string command_line;
};

po::options_description run_options(RunOptions& o) {
  po::options_description d("moetron run [options]");
  d.add_options()
      ("help,h", "describe the options")
      ("model", po::value(&o.model)->required(), "checkpoint directory (config.json + *.safetensors)")
      ("prompts", po::value(&o.prompts)->required(), "JSON Lines file, one request a line")
      ("out", po::value(&o.out)->required(), "results file (HDF5), written atomically")
      ("max-new-tokens", po::value(&o.max_new_tokens)->default_value(o.max_new_tokens),
       "tokens to generate for requests that give no max_new_tokens")
      ("ignore-eos", po::bool_switch(&o.ignore_eos), "do not stop at the EOS token")
      ("save-logits", po::bool_switch(&o.save_logits),
       "store the logits that chose each generated token (/requests/logits)")
      ("backend", po::value(&o.backend)->default_value(o.backend),
       "cpu, cuda, or auto (cuda where a GPU is present, else cpu)")
      ("plan", po::value(&o.plan)->default_value(o.plan),
       "parallel plan: auto, or pp=P,tp=T,dp=D,ep=E (omitted factors are 1)")
      ("temperature", po::value(&o.temperature)->default_value(o.temperature), "0: greedy")
      ("top-k", po::value(&o.top_k)->default_value(o.top_k), "0: off")
      ("top-p", po::value(&o.top_p)->default_value(o.top_p), "1: off")
      ("seed", po::value(&o.seed)->default_value(o.seed),
       "sampling seed; request i uses seed + i unless it gives its own")
      ("max-batch", po::value(&o.max_batch)->default_value(o.max_batch),
       "most sequences in one step")
      ("max-batch-tokens", po::value(&o.max_batch_tokens)->default_value(o.max_batch_tokens),
       "most tokens in one step (prompt tokens count here)")
      ("kv-cache-tokens", po::value(&o.kv_cache_tokens)->default_value(o.kv_cache_tokens),
       "KV-cache capacity in tokens per replica (0: sized from free memory, or from the requests on the CPU)")
      ("block-size", po::value(&o.block_size)->default_value(o.block_size), "tokens per KV-cache block")
      ("memory-per-rank", po::value(&o.memory_per_rank)->default_value(o.memory_per_rank),
       "bytes of memory each rank may fill with weights (0: the GPU's free memory, or the host's "
       "memory shared by the node's ranks); plans whose weights do not fit are refused")
      ("gpu-memory-fraction", po::value(&o.gpu_memory_fraction)->default_value(o.gpu_memory_fraction),
       "share of free GPU memory the KV cache may take")
      ("load-format", po::value(&o.load_format)->default_value(o.load_format),
       "auto|safetensors: read the checkpoint; dummy: only config.json, deterministic random weights")
      ("no-graphs", po::bool_switch(&o.no_graphs), "run the decode step eagerly (no CUDA graphs)")
      ("measure-gpu-idle", po::bool_switch(&o.measure_gpu_idle),
       "trace rank 0's GPU with CUPTI and report how long it idles within decode steps (cuda backend)")
      ("log-level", po::value(&o.log_level)->default_value(o.log_level), "debug, info, warn, error or off");
  return d;
}

void check_options(const RunOptions& o) {
  MOETRON_CHECK(o.backend == "auto" || o.backend == "cpu" || o.backend == "cuda",
                "--backend: unknown backend '" << o.backend << "' (expected cpu, cuda or auto)");
  MOETRON_CHECK(o.load_format == "auto" || o.load_format == "safetensors" || o.load_format == "dummy",
                "--load-format: unknown format '" << o.load_format << "' (expected auto, safetensors or dummy)");
  MOETRON_CHECK(o.max_new_tokens >= 1, "--max-new-tokens must be at least 1");
  MOETRON_CHECK(o.temperature >= 0, "--temperature must be >= 0");
  MOETRON_CHECK(o.top_p > 0 && o.top_p <= 1, "--top-p must be in (0, 1]");
  MOETRON_CHECK(o.top_k >= 0, "--top-k must be >= 0");
  MOETRON_CHECK(o.max_batch >= 1, "--max-batch must be at least 1");
  MOETRON_CHECK(o.max_batch_tokens >= 1, "--max-batch-tokens must be at least 1");
  MOETRON_CHECK(o.kv_cache_tokens >= 0, "--kv-cache-tokens must be >= 0");
  MOETRON_CHECK(o.memory_per_rank >= 0, "--memory-per-rank must be >= 0");
  MOETRON_CHECK(o.block_size >= 1 && o.block_size <= 1024, "--block-size must be in [1, 1024]");
  MOETRON_CHECK(o.gpu_memory_fraction > 0 && o.gpu_memory_fraction <= 1,
                "--gpu-memory-fraction must be in (0, 1]");
}

std::string resolve_backend(const std::string& requested) {
#ifdef MOETRON_HAVE_CUDA
  const bool gpu = cuda_device_available();
#else
  const bool gpu = false;
#endif
  if (requested == "auto") return gpu ? "cuda" : "cpu";
  if (requested == "cuda") {
#ifndef MOETRON_HAVE_CUDA
    MOETRON_FAIL("--backend cuda: this build has no CUDA backend (rebuild with nvcc present)");
#endif
    MOETRON_CHECK(gpu, "--backend cuda: no CUDA device is visible to this process");
  }
  return requested;
}

// Ranks on this node, for --plan auto's "tensor parallel within a node" and GPU selection.
int node_local_rank(int* ranks_on_node) {
  MPI_Comm local;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type");
  int rank = 0;
  check_mpi(MPI_Comm_rank(local, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(local, ranks_on_node), "MPI_Comm_size");
  check_mpi(MPI_Comm_free(&local), "MPI_Comm_free");
  return rank;
}

// What one rank's weights may take, for refusing plans that cannot fit before anything is
// loaded: --memory-per-rank, else the GPU's free memory, else the host's memory over the
// node's ranks. Every rank must refuse the same plans, so the smallest value over all ranks
// would be ideal; plans are validated per rank and a refusal on any rank ends the job.
int64_t memory_per_rank(const RunOptions& o, const std::string& backend, int local_rank, int ranks_on_node) {
  if (o.memory_per_rank > 0) return o.memory_per_rank;
#ifdef MOETRON_HAVE_CUDA
  if (backend == "cuda") {
    int devices = 0;
    size_t free_bytes = 0, total = 0;
    MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0, "no CUDA device");
    MOETRON_CHECK(cudaSetDevice(local_rank % devices) == cudaSuccess &&
                      cudaMemGetInfo(&free_bytes, &total) == cudaSuccess,
                  "cannot read the memory of CUDA device " << local_rank % devices);
    // Ranks sharing a GPU share its memory.
    const int sharing = std::max(1, (ranks_on_node + devices - 1) / devices);
    return static_cast<int64_t>(free_bytes) / sharing;
  }
#endif
  (void)backend;
  (void)local_rank;
  const int64_t host = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  return host / std::max(1, ranks_on_node);
}

ShardSpec shard_from_layout(const ShardLayout& l, const ModelConfig& c, const Plan& plan) {
  ShardSpec s;
  s.layer_begin = l.layers.begin;
  s.layer_end = l.layers.end;
  s.q_head_begin = l.q_heads.begin;
  s.q_head_count = l.q_heads.size();
  s.kv_head_begin = l.kv_heads.begin;
  s.kv_head_count = l.kv_heads.size();
  s.kv_replication = l.kv_replicated ? plan.tp / c.num_kv_heads : 1;
  s.mlp_col_begin = l.dense_columns.begin;
  s.mlp_col_count = l.dense_columns.size();
  s.shared_col_begin = l.shared_expert_columns.begin;
  s.shared_col_count = l.shared_expert_columns.size();
  s.expert_begin = l.experts.begin;
  s.expert_count = l.experts.size();
  s.expert_col_begin = l.expert_columns.begin;
  s.expert_col_count = l.expert_columns.size();
  s.vocab_begin = l.vocab.begin;
  s.vocab_count = l.vocab.size();
  s.first_stage = l.first_stage;
  s.last_stage = l.last_stage;
  s.holds_o_bias = l.coords.tp == 0;
  return s;
}

// Device memory for one step's temporaries (CudaOps reserves it once): the largest layer's
// scratch for max_tokens tokens (attention, router, the permuted expert rows and their
// intermediate activations, the shared expert) plus the logits of max_seqs rows, with slack.
size_t step_arena_bytes(const ModelConfig& c, const ShardSpec& s, int64_t max_tokens, int64_t max_seqs) {
  const int64_t hd = c.head_dim, k = std::max<int64_t>(c.top_k, 1);
  const int64_t q = s.q_head_count * hd, kv = s.kv_head_count * hd;
  const int64_t per_token_elems =
      4 * c.hidden_size + 3 * q + 3 * kv + c.num_experts + 4 * k +
      k * (2 * c.hidden_size + 3 * std::max(s.expert_col_count, int64_t{1})) +
      3 * std::max(s.shared_col_count, s.mlp_col_count) + c.hidden_size;
  const int64_t logits_bytes = max_seqs * (c.hidden_size * 4 + s.vocab_count * 10 + c.vocab_size * 4);
  const double bytes = static_cast<double>(max_tokens * per_token_elems * 2 + logits_bytes) * 1.25;
  return static_cast<size_t>(bytes) + (64u << 20);
}

std::unique_ptr<Ops> make_ops(const std::string& backend, int local_rank, size_t arena_bytes) {
  if (backend == "cpu") return make_cpu_ops();
#ifdef MOETRON_HAVE_CUDA
  int devices = 0;
  MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0, "no CUDA device");
  return make_cuda_ops(local_rank % devices, arena_bytes);
#else
  (void)local_rank;
  (void)arena_bytes;
  MOETRON_FAIL("no CUDA backend in this build");
#endif
}

// Groups that carry device tensors (tp, stage, pipeline) get a device transport: NCCL when
// every rank on this node has a GPU of its own, else MPI through host buffers (NCCL refuses
// two ranks on one GPU). The world and replica groups carry only host data and stay on MPI.
void use_device_transport(ParallelGroups& g, Ops& ops, int ranks_on_node) {
  if (ops.device() != Device::Cuda) return;
#ifdef MOETRON_HAVE_CUDA
  int devices = 0;
  MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess, "cudaGetDeviceCount failed");
  // Every rank must choose the same transport, so the node with the most ranks per GPU decides.
  std::vector<int64_t> shares_gpu = {ranks_on_node > devices ? 1 : 0};
  g.world->allreduce_host(shares_gpu, /*max_instead_of_sum=*/true);
  const bool nccl = shares_gpu[0] == 0;
  if (!nccl)
    LOG_INFO(ranks_on_node << " ranks share " << devices
                           << " GPU(s) on this node: NCCL refuses that, so the MPI transport carries "
                              "device tensors through host memory");
  auto* cuda = dynamic_cast<CudaOps*>(&ops);
  for (std::shared_ptr<Communicator>* group : {&g.tp, &g.stage, &g.pipeline}) {
    auto mpi = std::dynamic_pointer_cast<MpiCommunicator>(*group);
    if (!mpi) continue;  // a group of one moves nothing
    if (nccl) {
      *group = make_nccl_communicator(mpi, cuda->stream());
    } else {
      *group = make_staged_communicator(mpi, ops);
    }
  }
#else
  (void)g;
  (void)ranks_on_node;
#endif
}

std::string host_name() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}


// How the steps went, in two lines: the prefill rate, and the median decode step at each batch
// size that ran (perf/bench.py reads the second line).
void log_step_summary(const std::vector<StepRecord>& steps) {
  double prefill_s = 0;
  int64_t prefill_tokens = 0;
  std::map<int32_t, std::vector<double>> decode;  // batch size -> step seconds
  for (const StepRecord& st : steps) {
    if (st.is_prefill) {
      prefill_s += st.seconds;
      prefill_tokens += st.num_tokens;
    } else {
      decode[st.batch_size].push_back(st.seconds);
    }
  }
  if (prefill_tokens > 0)
    LOG_INFO("prefill: " << prefill_tokens << " tokens at " << static_cast<int64_t>(prefill_tokens / prefill_s)
                         << " tok/s");
  if (decode.empty()) return;
  std::ostringstream os;
  os << "decode step median by batch:";
  for (auto& [batch, seconds] : decode) {
    std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
    const double median = seconds[seconds.size() / 2];
    os << " " << batch << ": " << median * 1e3 << " ms (" << static_cast<int64_t>(batch / median) << " tok/s, "
       << seconds.size() << " steps);";
  }
  LOG_INFO(os.str());
}

int run(const RunOptions& o, int world_rank, int world_size) {
  const ModelConfig config = load_model_config(o.model + "/config.json");
  if (world_rank == 0) check_output_writable(o.out);
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
      make_ops(backend, local_rank, step_arena_bytes(config, shard, max_step_tokens, o.max_batch));
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
  // stage, one replica, and a device transport that can be recorded (NCCL or none).
  std::unique_ptr<DecodeGraphs> graphs;
  const bool recordable_transport = groups.tp->transport() == "self" || groups.tp->transport() == "nccl";
  if (!o.no_graphs && ops->can_record() && plan.pp == 1 && plan.dp == 1 && recordable_transport) {
    int64_t longest = 0;
    for (const Sequence& s : mine) longest = std::max(longest, s.total_tokens());
    const int64_t max_blocks = std::max<int64_t>((longest + o.block_size - 1) / o.block_size, 1);
    graphs = std::make_unique<DecodeGraphs>(*ops, forward, std::min<int64_t>(o.max_batch, std::max<int64_t>(static_cast<int64_t>(mine.size()), 1)),
                                            max_blocks, o.block_size, static_cast<int32_t>(eo.kv_blocks));
    graphs->capture();
  } else if (backend == "cuda") {
    LOG_INFO("decode steps run eagerly (" << (o.no_graphs ? "--no-graphs" : "not recordable with this plan or transport") << ")");
  }
  Engine engine(config, *ops, forward, eg, eo, graphs.get());
  const EngineReport report = engine.run(mine);

  // Expert load: each layer counted once per replica (by its tp rank 0), summed over all.
  const int64_t E = std::max<int64_t>(config.num_experts, 1);
  std::vector<int64_t> expert_tokens(static_cast<size_t>(config.num_layers * E), 0);
  const std::vector<int64_t> local_counts = forward.expert_counts();
  if (fc.count_experts)
    std::copy(local_counts.begin(), local_counts.end(),
              expert_tokens.begin() + static_cast<std::ptrdiff_t>(shard.layer_begin * E));
  groups.world->allreduce_host(expert_tokens, false);

  // What each rank held and moved.
  constexpr size_t kRankFields = 2;
  std::vector<int64_t> traffic(static_cast<size_t>(world_size) * kRankFields, 0);
  for (const auto& comm : {groups.tp, groups.stage, groups.replica, groups.pipeline, groups.world}) {
    if (auto* mpi = dynamic_cast<MpiCommunicator*>(comm.get())) {
      traffic[static_cast<size_t>(world_rank) * kRankFields] += mpi->bytes_sent();
      traffic[static_cast<size_t>(world_rank) * kRankFields + 1] += mpi->bytes_received();
    }
  }
  groups.world->allreduce_host(traffic, false);

  std::vector<Sequence> all = gather_sequences(*groups.world, eg.reporters, mine);
  if (world_rank != 0) return 0;

  RunResults results;
  results.meta.command_line = o.command_line;
  results.meta.host = host_name();
  results.meta.device = ops->name();
  results.meta.backend = backend;
  results.meta.plan = plan.to_string();
  results.meta.model_config = config.to_json().dump();
  results.total_seconds = report.total_seconds;
  results.steps = report.steps;
  results.logits_vocab_size = o.save_logits ? config.vocab_size : 0;
  for (const Sequence& s : all) {
    RequestResult r;
    r.id = specs[static_cast<size_t>(s.index)].id;
    r.prompt_tokens = specs[static_cast<size_t>(s.index)].prompt_tokens;
    r.output_tokens = s.output;
    r.token_times_s = s.token_times_s;
    r.ttft_s = s.token_times_s.empty() ? 0 : s.token_times_s.front();
    r.e2e_s = s.token_times_s.empty() ? 0 : s.token_times_s.back();
    r.finish_reason = s.finish_reason == "eos" ? FinishReason::Eos : FinishReason::Length;
    r.logits = s.logits;
    results.requests.push_back(std::move(r));
  }
  for (int64_t l = 0; l < config.num_layers; ++l)
    results.expert_tokens.emplace_back(expert_tokens.begin() + l * E, expert_tokens.begin() + (l + 1) * E);
  if (world_size > 1) {
    for (int r = 0; r < world_size; ++r) {
      const ShardLayout l = layout_for(plan, config, r);
      RankRecord rec;
      rec.pp_rank = l.coords.pp;
      rec.dp_rank = l.coords.dp;
      rec.tp_rank = l.coords.tp;
      rec.layer_begin = l.layers.begin;
      rec.layer_end = l.layers.end;
      rec.expert_begin = l.experts.begin;
      rec.expert_end = l.experts.end;
      rec.q_head_begin = l.q_heads.begin;
      rec.q_head_end = l.q_heads.end;
      rec.bytes_sent = traffic[static_cast<size_t>(r) * kRankFields];
      rec.bytes_received = traffic[static_cast<size_t>(r) * kRankFields + 1];
      rec.description = describe(plan, l, r);
      results.ranks.push_back(std::move(rec));
    }
  }
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
  return 0;
}

}  // namespace

int run_command(const std::vector<std::string>& args) {
  RunOptions o;
  for (const std::string& a : args) o.command_line += (o.command_line.empty() ? "" : " ") + a;
  o.command_line = "moetron run " + o.command_line;
  po::options_description desc = run_options(o);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(desc).run(), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
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
