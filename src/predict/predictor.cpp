#include "moetron/predict/predictor.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>

#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
#include "moetron/parallel/memory_need.hpp"
#include "moetron/predict/plan_geometry.hpp"

namespace moetron {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t whole_blocks(int64_t tokens, int64_t block) { return ceil_div(tokens, block) * block; }

// KV-cache tokens each replica keeps (the stage with the least room sets it, as the engine's
// agreement does), and the need of the stage's rank that needs the most; or why nothing fits.
struct MemoryFit {
  std::vector<RankMemoryNeed> stages;  // without KV
  int64_t kv_tokens = 0;
  std::string refusal;
};

MemoryFit fit_memory(const ModelConfig& config, const PlanGeometry& g, const Workload& w, const Cluster& cluster,
                     const PredictorOptions& options) {
  MemoryFit fit;
  RankMemoryInputs in;
  in.max_step_tokens = std::max(w.max_batch_tokens, w.prompt_tokens);
  in.max_seqs = w.max_batch;
  in.block_size = w.block_size;
  fit.kv_tokens = INT64_MAX;
  for (size_t s = 0; s < g.stages.size(); ++s) {
    const RankMemoryNeed need = estimate_rank_memory(config, g.plan, g.stages[s], in);
    fit.stages.push_back(need);
    const int64_t fixed = need.weights + need.activations + cluster.reserved_per_rank;
    if (cluster.memory_per_rank > 0 && fixed > cluster.memory_per_rank && fit.refusal.empty()) {
      std::ostringstream os;
      os << "stage " << s << " needs " << human_bytes(static_cast<double>(need.weights)) << " of weights + "
         << human_bytes(static_cast<double>(need.activations)) << " of temporaries + "
         << human_bytes(static_cast<double>(cluster.reserved_per_rank)) << " reserved, more than the "
         << human_bytes(static_cast<double>(cluster.memory_per_rank)) << " of a rank";
      fit.refusal = os.str();
    }
    if (cluster.memory_per_rank <= 0) continue;  // memory unknown: room for everything
    const double room = options.kv_memory_fraction * static_cast<double>(cluster.memory_per_rank - fixed);
    const int64_t tokens = room > 0 ? static_cast<int64_t>(room) / need.kv_per_token : 0;
    fit.kv_tokens = std::min(fit.kv_tokens, tokens / w.block_size * w.block_size);
  }
  const int64_t one_request = whole_blocks(w.prompt_tokens + w.output_tokens, w.block_size);
  if (fit.refusal.empty() && fit.kv_tokens < one_request) {
    std::ostringstream os;
    os << "the KV cache has room for " << std::max<int64_t>(fit.kv_tokens, 0) << " tokens per replica, one request needs "
       << one_request;
    fit.refusal = os.str();
  }
  return fit;
}

// The backend's activation element, as the memory check takes it (backend_storage): the CPU
// backend computes, stores and sends activations in f32 (CpuOps::activation_dtype), CUDA in
// bf16 (also the default for options without a backend).
int64_t activation_bytes_of(const std::string& backend) {
  return static_cast<int64_t>(dtype_size(backend_storage(backend == "cpu" ? "cpu" : "cuda").activations));
}

// On the CPU backend no expert call runs per-expert GEMMs, and each op runs on the host. An eager
// decode's launches overlap its kernels only where no collective waits for the device on the host
// (groups through host memory, ranks sharing a GPU, copy every collective's data to the host).
StepShape decode_shape(const Workload& w, int64_t batch, int micro_batches, bool recordable, const std::string& backend,
                       const Cluster& cluster) {
  return {batch,
          1,
          w.prompt_tokens + w.output_tokens / 2,
          false,
          micro_batches,
          recordable,
          backend != "cpu",
          activation_bytes_of(backend),
          backend != "cpu" && !cluster.device_groups_through_host,
          cluster.ranks_per_device};
}

StepShape prefill_shape(const Workload& w, int64_t prompts, int micro_batches, const std::string& backend,
                        const Cluster& cluster) {
  return {prompts,     w.prompt_tokens, w.prompt_tokens, true, micro_batches, false, backend != "cpu",
          activation_bytes_of(backend), false, cluster.ranks_per_device};
}

// The parts of a step, largest first, as "name NN%".
std::string largest_part(const StepCost& c) {
  const std::pair<const char*, double> parts[] = {
      {"compute", c.compute_s - c.imbalance_s}, {"expert imbalance", c.imbalance_s},
      {"kernel gaps", c.kernel_overhead_s},     {"tp all-reduce", c.tp_comm_s},
      {"expert all-to-all", c.expert_comm_s},   {"pipeline bubble", c.bubble_s + c.pipeline_comm_s},
      {"host sync", c.host_sync_s},             {"host bookkeeping", c.host_s},
      {"device sharing", c.sharing_s}};
  const auto* top = std::max_element(std::begin(parts), std::end(parts),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
  std::ostringstream os;
  os << top->first << " " << std::llround(100 * top->second / std::max(c.total_s(), 1e-30)) << "%";
  return os.str();
}

// Assumption 10: the workload's generated tokens over its time (all requests at once, full
// batches of `batch` sequences a replica, prompts in steps of `prefill_prompts`); with an arrival
// rate, what arrives when that is less.
double workload_output_tokens_per_s(const Workload& w, const Plan& plan, int64_t batch, int64_t prefill_prompts,
                                    double prefill_step_s, double decode_step_s) {
  const double per_replica = static_cast<double>(w.requests) / plan.dp;
  const double prefill_steps = std::ceil(per_replica / static_cast<double>(prefill_prompts));
  const double free_rows = prefill_steps * static_cast<double>(batch - prefill_prompts);
  const double decode_rows = std::max(0.0, per_replica * static_cast<double>(w.output_tokens - 1) - free_rows);
  const double seconds = prefill_steps * prefill_step_s + decode_rows / static_cast<double>(batch) * decode_step_s;
  const double rate = static_cast<double>(w.requests * w.output_tokens) / seconds;
  return w.arrival_rate > 0 ? std::min(rate, w.arrival_rate * static_cast<double>(w.output_tokens)) : rate;
}

bool better(const PlanPrediction& a, const PlanPrediction& b) {
  if (a.output_tokens_per_s != b.output_tokens_per_s) return a.output_tokens_per_s > b.output_tokens_per_s;
  if (a.decode_tokens_per_s != b.decode_tokens_per_s) return a.decode_tokens_per_s > b.decode_tokens_per_s;
  return a.ttft_s < b.ttft_s;
}

}  // namespace

std::vector<int> micro_batch_choices(int pp, int fixed) {
  if (pp == 1) return {1};
  if (fixed > 0) return {fixed};
  return {1, pp, 2 * pp};
}

bool decode_recordable(const Plan& plan, const std::string& backend, bool device_groups_through_host) {
  if (plan.pp > 1 || backend == "cpu") return false;
  return !(device_groups_through_host && (plan.tp > 1 || plan.dp > 1));
}

PlanPrediction predict_plan(const ModelConfig& config, const Plan& plan, const Workload& w,
                            const Cluster& cluster, const CostModel& cost, const PredictorOptions& options) {
  MOETRON_CHECK(plan.world_size() == cluster.ranks,
                "predictor: plan " << plan.to_string() << " has " << plan.world_size() << " ranks, the cluster "
                                   << cluster.ranks);
  PlanPrediction p;
  p.plan = plan;
  p.micro_batches = plan.micro_batch_count();
  const PlanGeometry g = plan_geometry(config, plan, cluster.ranks_per_node);
  const MemoryFit fit = fit_memory(config, g, w, cluster, options);
  const std::string kernels = options.backend == "cuda" ? cuda_plan_problem(plan, config) : "";
  p.refusal = kernels.empty() ? fit.refusal : kernels;
  p.fits = p.refusal.empty();
  p.kv_tokens = cluster.memory_per_rank > 0 ? fit.kv_tokens : -1;

  // Sequences per replica (assumption 8).
  const int64_t requests = ceil_div(w.requests, plan.dp);
  const int64_t footprint = whole_blocks(w.prompt_tokens + w.output_tokens / 2, w.block_size);
  const int64_t by_kv = std::max<int64_t>(1, fit.kv_tokens / footprint);
  const std::pair<int64_t, const char*> limits[] = {
      {w.max_batch, "max batch"}, {requests, "requests"}, {by_kv, "KV cache"}};
  const auto* least = std::min_element(std::begin(limits), std::end(limits));
  p.batch = least->first;
  p.batch_limit = least->second;
  const bool recordable = decode_recordable(plan, options.backend, cluster.device_groups_through_host);
  const auto decode_at = [&](int64_t batch) {
    return decode_shape(w, batch, p.micro_batches, recordable, options.backend, cluster);
  };
  const auto decode_s = [&](int64_t batch) { return step_cost(g, options.expert_shares, decode_at(batch), cost); };
  p.decode_shape = decode_at(p.batch);
  p.decode = step_cost(g, options.expert_shares, p.decode_shape, cost);
  p.prefill_prompts = std::clamp<int64_t>(w.max_batch_tokens / w.prompt_tokens, 1, p.batch);
  p.prefill_shape = prefill_shape(w, p.prefill_prompts, p.micro_batches, options.backend, cluster);
  p.prefill = step_cost(g, options.expert_shares, p.prefill_shape, cost);
  const double t_prefill = p.prefill.total_s();
  p.prefill_tokens_per_s = static_cast<double>(plan.dp * p.prefill_prompts * w.prompt_tokens) / t_prefill;
  // The workload at the full batch (assumption 10); with arrivals, what arrives when less.
  const int64_t capacity_batch = p.batch;
  p.output_tokens_per_s = workload_output_tokens_per_s(w, plan, capacity_batch, p.prefill_prompts, t_prefill,
                                                       p.decode.total_s());
  if (w.arrival_rate > 0) {
    // Arrivals keep at least the least batch B with B = rate per replica * output tokens * ITL(B)
    // busy (Little's law).
    const double rate = w.arrival_rate / plan.dp;
    int64_t b = 1;
    for (int i = 0; i < 64; ++i) {
      const int64_t next = std::clamp<int64_t>(
          static_cast<int64_t>(rate * static_cast<double>(w.output_tokens) * decode_s(b).total_s()), 1, p.batch);
      if (next == b) break;
      b = next;
    }
    if (b < p.batch) p.batch = b, p.batch_limit = "arrival rate", p.decode_shape = decode_at(b), p.decode = decode_s(b);
    const StepShape one_prompt = prefill_shape(w, 1, p.micro_batches, options.backend, cluster);
    p.ttft_s = step_cost(g, options.expert_shares, one_prompt, cost).total_s();
  } else {
    const double first_steps = std::ceil(static_cast<double>(p.batch) / static_cast<double>(p.prefill_prompts));
    p.ttft_s = t_prefill * (first_steps + 1) / 2;
  }
  p.itl_s = p.decode.total_s();
  p.decode_tokens_per_s = static_cast<double>(plan.dp * p.batch) / p.itl_s;

  // Memory per rank: the stage needing the most, with the KV cache of `batch` whole requests.
  const int64_t kv_tokens = p.batch * whole_blocks(w.prompt_tokens + w.output_tokens, w.block_size);
  for (RankMemoryNeed need : fit.stages) {
    need.kv_cache = need.kv_per_token * kv_tokens;
    if (need.total() > p.memory.total()) p.memory = need;
  }
  p.bottleneck = largest_part(p.decode);

  // The same steps and schedule priced by floors (assumption 14); a plan that cannot run has no
  // run to bound.
  if (options.ceiling != nullptr && p.fits) {
    const CostModel& floors = *options.ceiling;
    PlanCeiling& c = p.ceiling;
    c.decode = step_cost(g, options.expert_shares, p.decode_shape, floors);
    c.prefill = step_cost(g, options.expert_shares, p.prefill_shape, floors);
    const double capacity_decode_s = capacity_batch == p.batch
                                         ? c.decode.total_s()
                                         : step_cost(g, options.expert_shares, decode_at(capacity_batch), floors).total_s();
    c.output_tokens_per_s = workload_output_tokens_per_s(w, plan, capacity_batch, p.prefill_prompts,
                                                         c.prefill.total_s(), capacity_decode_s);
    c.decode_tokens_per_s = static_cast<double>(plan.dp * p.batch) / c.decode.total_s();
  }
  return p;
}

std::vector<PlanPrediction> predict_plans(const ModelConfig& config, const Workload& w, const Cluster& cluster,
                                          const CostModel& cost, const PredictorOptions& options) {
  check_workload(w);
  MOETRON_CHECK(cluster.ranks >= 1, "--ranks must be at least 1, got " << cluster.ranks);
  MOETRON_CHECK(cluster.ranks_per_node >= 1, "--ranks-per-node must be at least 1, got " << cluster.ranks_per_node);
  MOETRON_CHECK(cluster.ranks_per_device >= 1 && std::isfinite(cluster.ranks_per_device),
                "--ranks-per-device must be at least 1, got " << cluster.ranks_per_device);
  MOETRON_CHECK(options.micro_batches >= 0 && options.micro_batches <= kMaxMicroBatches,
                "--micro-batches must be in [0, " << kMaxMicroBatches << "], got " << options.micro_batches);
  std::vector<PlanPrediction> all;
  for (const Plan& layout : enumerate_plans(config, cluster.ranks)) {
    std::pair<int64_t, int64_t> previous{-1, -1};  // the last choice's non-empty micro-batches
    for (int m : micro_batch_choices(layout.pp, options.micro_batches)) {
      Plan plan = layout;
      plan.mb = m == layout.pp ? 0 : m;  // the engine's default stays unwritten ("pp=2,...")
      PlanPrediction p = predict_plan(config, plan, w, cluster, cost, options);
      // More micro-batches than a step has sequences only add empty ones: the same plan again.
      const std::pair<int64_t, int64_t> filled{std::min<int64_t>(m, p.batch), std::min<int64_t>(m, p.prefill_prompts)};
      if (filled == previous) continue;
      previous = filled;
      all.push_back(std::move(p));
    }
  }
  std::stable_partition(all.begin(), all.end(), [](const PlanPrediction& p) { return p.fits; });
  const auto fitting_end = std::partition_point(all.begin(), all.end(), [](const PlanPrediction& p) { return p.fits; });
  std::stable_sort(all.begin(), fitting_end, better);
  return all;
}

std::string explain_best(const std::vector<PlanPrediction>& ranking) {
  if (ranking.empty() || !ranking.front().fits) return "no plan fits";
  const PlanPrediction& best = ranking.front();
  std::ostringstream os;
  os.precision(3);
  os << best.plan.to_string() << " wins: decode step " << best.decode.total_s() * 1e3 << " ms ("
     << best.bottleneck << ") for " << best.batch << " sequences per replica x " << best.plan.dp << " replicas";
  if (ranking.size() < 2 || !ranking[1].fits) {
    os << "; it is the only plan that fits";
    return os.str();
  }
  const PlanPrediction& next = ranking[1];
  os << "; " << std::llround(100 * (best.output_tokens_per_s / next.output_tokens_per_s - 1))
     << "% more throughput than the runner-up, "
     << next.plan.to_string() << " (decode step " << next.decode.total_s() * 1e3 << " ms, " << next.bottleneck
     << ", " << next.batch << " x " << next.plan.dp;
  if (next.batch_limit == "KV cache") os << ", batch limited by its KV cache";
  os << ")";
  return os.str();
}

}  // namespace moetron
