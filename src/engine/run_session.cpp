#include "moetron/engine/run_session.hpp"

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#include "moetron/core/stopwatch.hpp"
#include "moetron/engine/gather.hpp"
#include "moetron/engine/warm_up.hpp"
#include "moetron/model/checkpoint_source.hpp"

namespace moetron {

namespace {

// The tokens a request holds at its end: its prompt and every token it may generate.
int64_t full_length(const RequestSpec& r) {
  return static_cast<int64_t>(r.prompt_tokens.size()) + r.max_new_tokens;
}

// Per local layer, data-parallel replica dp_index's copy table on the host (replica_route_table's
// rotation: each replica starts its rows at another copy); empty for dense layers.
std::vector<std::vector<int32_t>> host_replica_tables(const ExpertReplicas& replicas, const ModelWeights& weights,
                                                      int64_t dp_index) {
  std::vector<std::vector<int32_t>> tables;
  for (const LayerWeights& w : weights.layers)
    tables.push_back(w.is_moe ? replica_route_table(replicas, w.index, dp_index) : std::vector<int32_t>{});
  return tables;
}

// Such tables in backend memory, undefined for dense layers: per layer [E, C], or `stacked`
// tables laid end to end [stacked, E, C].
std::vector<Tensor> upload_tables(const std::vector<std::vector<int32_t>>& host, int64_t experts, Ops& ops,
                                  int64_t stacked = 0) {
  std::vector<Tensor> tables;
  for (const std::vector<int32_t>& layer : host) {
    Tensor t;
    if (!layer.empty()) {
      const int64_t cols = static_cast<int64_t>(layer.size()) / std::max<int64_t>(stacked, 1) / experts;
      t = ops.alloc(DType::I32, stacked > 0 ? std::vector<int64_t>{stacked, experts, cols}
                                            : std::vector<int64_t>{experts, cols});
      ops.copy_from_host(t, layer.data());
    }
    tables.push_back(t);
  }
  return tables;
}

// The copy tables of redundant experts (ForwardContext::replica_tables), one per local layer in
// backend memory, undefined for dense layers; none without replicas.
std::vector<Tensor> replica_tables(const ExpertReplicas& replicas, const ModelWeights& weights, int64_t dp_index,
                                   Ops& ops) {
  if (!replicas.active()) return {};
  return upload_tables(host_replica_tables(replicas, weights, dp_index), replicas.experts, ops);
}

// Rank emulation (ForwardContext::peer_tables): the route tables of every rank of the stage
// group, so that each emulated peer routes as its replica would (emulated_peer_table: its own
// copy rotation with redundant experts; its picks moved within each EP set by its distance from
// this replica under --emulate-peers rotated, and as many sets on under spread). Replicas whose
// tables are the same share one; each layer's distinct tables are stacked into one upload at
// setup, and each rank (dp index * tp + tp index) names its table and tp rank. None without dispatch (dp = 1), nor where every
// peer would route as this rank (no replicas, peers Same: the all-to-all's copies are right).
void set_peer_tables(const ExpertReplicas& replicas, const ModelWeights& weights, const Plan& plan,
                     const ModelConfig& config, int own_dp, EmulatedPeers peers, Ops& ops, ForwardContext& ctx) {
  const bool rotated = peers != EmulatedPeers::Same, across_sets = peers == EmulatedPeers::Spread;
  if (plan.dp == 1 || (!replicas.active() && !rotated)) return;
  const int64_t experts = config.num_experts, set_size = experts / plan.ep;
  std::vector<std::vector<std::vector<int32_t>>> distinct;  // [table][layer]: host tables
  std::vector<int32_t> senders;
  for (int d = 0; d < plan.dp; ++d) {
    std::vector<std::vector<int32_t>> host =
        replicas.active() ? host_replica_tables(replicas, weights, d)
                          : std::vector<std::vector<int32_t>>(weights.layers.size());
    const int64_t distance = rotated ? (d - own_dp + plan.dp) % plan.dp : 0;
    for (size_t l = 0; l < host.size(); ++l)
      if (weights.layers[l].is_moe) host[l] = emulated_peer_table(host[l], experts, set_size, distance, across_sets);
    const size_t i = static_cast<size_t>(std::find(distinct.begin(), distinct.end(), host) - distinct.begin());
    if (i == distinct.size()) distinct.push_back(host);
    for (int t = 0; t < plan.tp; ++t) senders.insert(senders.end(), {static_cast<int32_t>(i), t});
  }
  std::vector<std::vector<int32_t>> stacked(distinct.front().size());  // per layer: every distinct table
  for (const auto& tables : distinct)
    for (size_t l = 0; l < stacked.size(); ++l) stacked[l].insert(stacked[l].end(), tables[l].begin(), tables[l].end());
  ctx.peer_tables = upload_tables(stacked, experts, ops, static_cast<int64_t>(distinct.size()));
  ctx.peer_senders = ops.alloc(DType::I32, {static_cast<int64_t>(senders.size()) / 2, 2});
  ops.copy_from_host(ctx.peer_senders, senders.data());
}

}  // namespace

int64_t kv_cache_tokens(const KvSizing& s, const std::vector<RequestSpec>& requests) {
  if (s.requested_tokens > 0) return s.requested_tokens;
  if (s.free_bytes >= 0) {
    if (s.bytes_per_token <= 0) return 0;
    return static_cast<int64_t>(static_cast<double>(s.free_bytes) * s.memory_fraction) / s.bytes_per_token;
  }
  int64_t tokens = 0;
  for (const RequestSpec& r : requests) tokens += full_length(r) + s.block_size;
  return tokens;
}

int64_t kv_tokens_to_fit(int64_t requested_tokens, bool sized_from_free_memory, int64_t block_size,
                         const std::vector<RequestSpec>& requests) {
  if (requested_tokens > 0) return requested_tokens;
  if (!sized_from_free_memory) {
    KvSizing cpu;
    cpu.block_size = block_size;
    return kv_cache_tokens(cpu, requests);
  }
  int64_t longest = 0;
  for (const RequestSpec& r : requests) longest = std::max(longest, full_length(r));
  return longest + block_size;
}

int64_t max_step_tokens(int64_t max_batch_tokens, const std::vector<RequestSpec>& requests) {
  int64_t longest_prompt = 0;
  for (const RequestSpec& r : requests)
    longest_prompt = std::max<int64_t>(longest_prompt, static_cast<int64_t>(r.prompt_tokens.size()));
  return std::max(max_batch_tokens, longest_prompt);
}

RunShape run_shape(const RunSettings& settings, const std::string& backend, const std::vector<RequestSpec>& requests) {
  RunShape shape;
  shape.kv_tokens = kv_tokens_to_fit(settings.kv_cache_tokens, backend == "cuda", settings.block_size, requests);
  shape.block_size = settings.block_size;
  shape.max_step_tokens = max_step_tokens(settings.max_batch_tokens, requests);
  shape.max_batch = settings.max_batch;
  shape.redundant_experts = settings.redundant_experts;
  return shape;
}

bool can_record_decode(bool graphs_off, bool backend_records, int pp, const std::string& tp_transport,
                       const std::string& stage_transport, std::string* why_not) {
  const auto recordable = [](const std::string& t) {
    return t.empty() || t == "self" || t == "nccl" || t == "emulated";
  };
  std::string reason;
  if (graphs_off)
    reason = "--no-graphs";
  else if (!backend_records)
    reason = "the backend cannot record";
  else if (pp > 1)
    reason = "pipeline stages wait for each other on the host";
  else if (!recordable(tp_transport))
    reason = "the tp group's " + tp_transport + " transport cannot be recorded";
  else if (!recordable(stage_transport))
    reason = "the expert dispatch's " + stage_transport + " transport cannot be recorded";
  if (why_not) *why_not = reason;
  return reason.empty();
}

std::vector<int> replica_of_requests(const std::vector<RequestSpec>& requests, int replicas) {
  std::vector<int> replica_of;
  int next = 0;  // round robin over the requests that follow none
  for (const RequestSpec& r : requests) {
    if (r.after >= 0) {
      replica_of.push_back(replica_of.at(static_cast<size_t>(r.after)));
    } else {
      replica_of.push_back(next);
      next = (next + 1) % replicas;
    }
  }
  return replica_of;
}

std::vector<Sequence> requests_for_replica(const std::vector<RequestSpec>& requests, int replicas,
                                           int replica, const RequestDefaults& d) {
  MOETRON_CHECK(replicas > 0 && replica >= 0 && replica < replicas,
                "replica " << replica << " of " << replicas << " does not exist");
  std::vector<Sequence> mine;
  const std::vector<int> replica_of = replica_of_requests(requests, replicas);
  for (size_t i = 0; i < requests.size(); ++i) {
    if (replica_of[i] != replica) continue;
    const RequestSpec& r = requests[i];
    Sequence s;
    s.index = static_cast<int64_t>(i);
    s.id = r.id;
    s.prompt = r.prompt_tokens;
    s.max_new_tokens = r.max_new_tokens;
    s.ignore_eos = r.ignore_eos.value_or(d.ignore_eos);
    s.sampling.temperature = r.temperature.value_or(d.sampling.temperature);
    s.sampling.top_k = r.top_k.value_or(d.sampling.top_k);
    s.sampling.top_p = r.top_p.value_or(d.sampling.top_p);
    s.sampling.seed = r.seed.value_or(d.sampling.seed + i);
    s.arrival_s = r.arrival_s.value_or(0.0);
    s.after = r.after;
    mine.push_back(std::move(s));
  }
  return mine;
}

StartupRecord slowest_startup(Communicator& world, const StartupRecord& mine) {
  // Times travel as integer nanoseconds: the host all-reduce takes int64.
  const auto ns = [](double s) { return static_cast<int64_t>(s * 1e9); };
  std::vector<int64_t> v = {ns(mine.weights_seconds), mine.weights_bytes_read, ns(mine.kv_cache_seconds),
                            ns(mine.graphs_seconds), mine.graphs, ns(mine.total_seconds),
                            ns(mine.warmup_seconds)};
  world.allreduce_host(v, /*max_instead_of_sum=*/true);
  StartupRecord s;
  s.weights_seconds = v[0] * 1e-9;
  s.weights_bytes_read = v[1];
  s.kv_cache_seconds = v[2] * 1e-9;
  s.graphs_seconds = v[3] * 1e-9;
  s.graphs = v[4];
  s.total_seconds = v[5] * 1e-9;
  s.warmup_seconds = v[6] * 1e-9;
  return s;
}

std::string describe_startup(const StartupRecord& s) {
  std::ostringstream os;
  os << std::setprecision(3) << "startup: ready in " << s.total_seconds << " s; weights " << s.weights_bytes_read / 1e9
     << " GB read in " << s.weights_seconds << " s";
  if (s.weights_seconds > 0) os << " (" << s.weights_bytes_read / s.weights_seconds / 1e9 << " GB/s)";
  os << ", KV cache " << s.kv_cache_seconds << " s";
  if (s.graphs > 0)
    os << ", " << s.graphs << " decode graphs recorded in " << s.graphs_seconds << " s";
  if (s.warmup_seconds > 0) os << ", warm-up forward " << s.warmup_seconds << " s";
  os << " (slowest rank for each part)";
  return os.str();
}

RunSession::RunSession(const ModelConfig& config, const std::vector<RequestSpec>& requests,
                       const RunSettings& settings, const DeviceAccess& device, MPI_Comm world)
    : config_(config), requests_(requests), settings_(settings), gpu_uuid_(device.gpu_uuid),
      ranks_sharing_device_(device.ranks_sharing_device), world_(world) {
  const Stopwatch setup;
  const Plan& plan = settings_.plan;
  MOETRON_CHECK(!settings_.routing_skew.active() || settings_.dummy_weights,
                "--routing-skew " << settings_.routing_skew.text << " needs --load-format dummy (random weights)");
  const int64_t redundant = settings_.redundant_experts;
  check_redundant_experts(redundant, plan.to_string(), plan.ep);
  const Emulation& emulation = settings_.emulation;
  if (redundant > 0)
    replicas_ = place_redundant_experts(settings_.expert_loads, config_.num_layers, config_.num_experts, plan.ep,
                                        redundant);
  if (!emulation.active()) groups_ = build_groups(plan, config_, world);
  const ShardSpec shard = emulation.active() ? layout_for(plan, config_, emulation.rank).shard : groups_.layout.shard;

  max_step_tokens_ = max_step_tokens(settings_.max_batch_tokens, requests_);
  ops_ = device.make_ops(step_arena_bytes(config_, shard, plan, device.storage.activations, max_step_tokens_,
                                          settings_.max_batch, redundant));
  if (emulation.active()) {
    // The emulated groups copy through the backend, so they come after it. Their device
    // buffers are reserved for the largest step's activations in float32, before any recording.
    const int64_t most_rows = std::max(max_step_tokens_, settings_.max_batch);
    const size_t reserve = static_cast<size_t>(most_rows * config_.hidden_size) * sizeof(float);
    groups_ = emulated_groups(plan, config_, emulation, std::make_shared<EmulationBuffers>(*ops_, reserve));
    LOG_INFO("emulating rank " << emulation.rank << " of " << emulation.world << " (plan " << plan.to_string()
                               << "): collectives are local copies of the same sizes; tokens are not meaningful");
  } else {
    device.bind_transports(groups_, *ops_);
  }

  {
    const Stopwatch loading;
    std::unique_ptr<WeightSource> source = settings_.dummy_weights
                                               ? make_random_source(settings_.weights_seed, DType::BF16)
                                               : open_checkpoint_source(settings_.model_dir);
    weights_ = load_weights(*source, config_, shard, *ops_, copies_held(replicas_, groups_.layout.expert_set));
    apply_routing_skew(settings_.routing_skew, config_, shard, settings_.weights_seed, *ops_, weights_);
    ops_->sync();  // uploads may still be in flight
    startup_.weights_seconds = loading.seconds();
    startup_.weights_bytes_read = static_cast<int64_t>(weights_.source_bytes);
  }
  LOG_INFO("weights loaded: " << weights_.bytes / 1e6 << " MB on rank 0");

  const Stopwatch kv_timer;
  set_up_kv_cache();

  forward_context_.config = &config_;
  forward_context_.ops = ops_.get();
  forward_context_.shard = &groups_.layout.shard;
  forward_context_.weights = &weights_;
  forward_context_.tp = groups_.tp.get();
  forward_context_.stage = plan.dp > 1 ? groups_.stage.get() : nullptr;
  forward_context_.expert_set_size = replicas_.active() ? replicas_.slot_width() : config_.num_experts / plan.ep;
  forward_context_.replica_tables = replica_tables(replicas_, weights_, groups_.coords.dp, *ops_);
  if (emulation.active())
    set_peer_tables(replicas_, weights_, plan, config_, groups_.coords.dp, emulation.peers, *ops_, forward_context_);
  forward_context_.expert_shards = plan.expert_shards();
  forward_context_.count_experts = groups_.coords.tp == 0;
  forward_context_.max_tokens = max_step_tokens_;
  // One block more than the scheduler hands out: the scratch block that padded rows of a
  // recorded decode step write into.
  forward_ = std::make_unique<ModelForward>(forward_context_, kv_blocks_ + 1, settings_.block_size);
  startup_.kv_cache_seconds = kv_timer.seconds();
  LOG_INFO("KV cache: " << kv_blocks_ * settings_.block_size << " tokens per replica ("
                        << forward_->kv_cache_bytes() / 1e6 << " MB on rank 0)");

  mine_ = requests_for_replica(requests_, plan.dp, groups_.coords.dp, settings_.defaults);
  const Stopwatch recording;
  set_up_graphs();
  if (graphs_) {
    startup_.graphs_seconds = recording.seconds();
    startup_.graphs = static_cast<int64_t>(graphs_->buckets().size());
  }
  if (settings_.warm_up) {
    const Stopwatch warming;
    warm_up();
    startup_.warmup_seconds = warming.seconds();
  }
  startup_.total_seconds = setup.seconds();
  startup_ = slowest_startup(*groups_.world, startup_);
  LOG_INFO(describe_startup(startup_));
}

RunSession::~RunSession() = default;

// Blocks per replica. Every rank of a replica holds its layers' and heads' share of the same
// block ids, so all must agree on the count: the minimum over the world.
void RunSession::set_up_kv_cache() {
  KvSizing sizing;
  sizing.requested_tokens = settings_.kv_cache_tokens;
  if (settings_.kv_cache_tokens == 0 && ops_->free_memory_bytes() >= 0) {
    // Ranks sharing a GPU share what is free once all of them hold their weights: read it
    // after every rank has loaded, and take this rank's share (two ranks on one H200 each
    // took the whole of it, and the second cache allocation failed).
    groups_.world->barrier();
    sizing.free_bytes = ops_->free_memory_bytes() / std::max(1, ranks_sharing_device_);
  }
  sizing.memory_fraction = settings_.gpu_memory_fraction;
  sizing.bytes_per_token = kv_bytes_per_token(static_cast<int64_t>(weights_.layers.size()),
                                              groups_.layout.shard.kv_head_count, config_.head_dim,
                                              ops_->activation_dtype());
  sizing.block_size = settings_.block_size;
  std::vector<int64_t> agreed = {-kv_cache_tokens(sizing, requests_)};
  groups_.world->allreduce_host(agreed, /*max_instead_of_sum=*/true);
  const int64_t kv_tokens = -agreed[0];
  kv_blocks_ = kv_tokens / settings_.block_size;
  MOETRON_CHECK(kv_blocks_ > 0, "no memory left for the KV cache (" << kv_tokens << " tokens)");
}

void RunSession::set_up_graphs() {
  const Plan& plan = settings_.plan;
  const auto transport = [](const Communicator* c) { return c ? c->transport() : std::string(); };
  std::string why_not;
  if (!can_record_decode(settings_.no_graphs, ops_->can_record(), plan.pp, transport(forward_context_.tp),
                         transport(forward_context_.stage), &why_not)) {
    if (ops_->device() == Device::Cuda) LOG_INFO("decode steps run eagerly (" << why_not << ")");
    return;
  }
  // Replicas record the same buckets: the largest batch and the longest sequence of any.
  std::vector<int64_t> bounds = {static_cast<int64_t>(mine_.size()), 0};
  for (const Sequence& s : mine_) bounds[1] = std::max(bounds[1], s.total_tokens());
  groups_.world->allreduce_host(bounds, /*max_instead_of_sum=*/true);
  const int64_t block = settings_.block_size;
  const int64_t max_blocks = std::max<int64_t>((bounds[1] + block - 1) / block, 1);
  const int64_t max_batch = std::min<int64_t>(settings_.max_batch, std::max<int64_t>(bounds[0], 1));
  graphs_ = std::make_unique<DecodeGraphs>(*ops_, *forward_, max_batch, max_blocks, block,
                                           static_cast<int32_t>(kv_blocks_), /*replicas_meet=*/plan.dp > 1);
  graphs_->capture();
}

void RunSession::warm_up() {
  WarmUpShape shape;
  // The largest step this replica's requests can make: its arena's size, unless they are fewer
  // tokens in all (a larger warm-up would take kernels no step of this run takes).
  int64_t all_tokens = 0;
  for (const Sequence& s : mine_) all_tokens += s.total_tokens();
  shape.prefill_tokens = std::min(max_step_tokens_, std::max<int64_t>(all_tokens, 1));
  // The largest batch the decode graphs do not already hold (they ran each bucket once).
  shape.decode_rows = graphs_ ? 0 : std::min<int64_t>(settings_.max_batch, std::max<int64_t>(mine_.size(), 1));
  shape.block_size = settings_.block_size;
  shape.scratch_block = static_cast<int32_t>(kv_blocks_);
  shape.first_stage = groups_.coords.pp == 0;
  shape.last_stage = groups_.coords.pp == settings_.plan.pp - 1;
  shape.vocab_size = config_.vocab_size;
  shape.hidden_size = config_.hidden_size;
  warm_up_forward(*forward_, *ops_, shape);
}

RunOutcome RunSession::run() {
  const Plan& plan = settings_.plan;
  EngineGroups eg;
  eg.world = groups_.world.get();
  eg.tp = groups_.tp.get();
  eg.replica = groups_.replica.get();
  eg.pipeline = groups_.pipeline.get();
  eg.stage = groups_.stage.get();
  eg.pp_rank = groups_.coords.pp;
  eg.pp_size = plan.pp;
  eg.dp_rank = groups_.coords.dp;
  eg.dp_size = plan.dp;
  eg.tp_rank = groups_.coords.tp;
  eg.replica_root = (plan.pp - 1) * plan.tp;
  for (int d = 0; d < plan.dp; ++d) eg.reporters.push_back(rank_of(plan, {plan.pp - 1, d, 0}));

  EngineOptions eo;
  eo.limits.block_size = settings_.block_size;
  eo.limits.max_batch_seqs = settings_.max_batch;
  eo.limits.max_batch_tokens = settings_.max_batch_tokens;
  eo.limits.prefill_chunk = settings_.prefill_chunk;
  eo.limits.admission = settings_.admission;
  eo.adaptive_chunk.itl_target_ratio = settings_.itl_target_ratio;
  eo.limits.max_step_tokens = max_step_tokens_;
  eo.kv_blocks = kv_blocks_;
  eo.save_logits = settings_.save_logits;
  eo.observer = settings_.observer;
  eo.routing_window = settings_.routing_window;
  eo.micro_batches = plan.micro_batch_count();

  RunOutcome out;
  Engine engine(config_, *ops_, *forward_, eg, eo, graphs_.get());
  out.report = engine.run(mine_);
  // An emulated rank has no peers to gather from: it reports its own share (its layers' expert
  // counts, its entry of the per-rank records, its replica's sequences) over a group of one.
  ParallelGroups emulated_report;
  if (settings_.emulation.active()) {
    emulated_report = groups_;
    emulated_report.world = make_self_communicator();
    eg.reporters = {0};
  }
  ParallelGroups& gathering = settings_.emulation.active() ? emulated_report : groups_;
  out.expert_tokens = gather_expert_tokens(gathering, *forward_, groups_.layout.shard, config_,
                                           forward_context_.count_experts);
  out.routing = gather_expert_routing(gathering, *forward_, groups_.layout.shard, config_, forward_context_.count_experts,
                                      out.report.window_counts, out.report.window_ranges);
  out.expert_work = gather_expert_work(gathering, *forward_, plan.world_size());
  out.traffic = gather_traffic(gathering, plan.world_size());
  out.comm_wait = gather_comm_wait(gathering, out.report.decode_comm_wait_s, out.report.prefill_comm_wait_s,
                                   plan.world_size());
  if (settings_.emulation.active()) {  // the world group's traffic, left out with it above
    const Traffic t = groups_.world->traffic();
    out.traffic[static_cast<size_t>(groups_.world_rank) * kRankFields] += t.sent;
    out.traffic[static_cast<size_t>(groups_.world_rank) * kRankFields + 1] += t.received;
  }
  out.finished = gather_sequences(*gathering.world, eg.reporters, mine_);
  out.places = gather_places(*ops_, gpu_uuid_, world_);
  out.startup = startup_;
  if (replicas_.active())
    out.replica_placement = replica_placement_record(replicas_, settings_.redundant_experts);
  return out;
}

}  // namespace moetron
