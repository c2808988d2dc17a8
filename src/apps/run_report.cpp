#include "run_report.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/core/log.hpp"

namespace moetron::apps {
namespace {

constexpr size_t kRankFields = 2;  // bytes sent, bytes received

// The distinct entries, in order of first appearance, joined by ", ".
std::string distinct(const std::vector<std::string>& all) {
  std::vector<std::string> seen;
  for (const std::string& s : all)
    if (std::find(seen.begin(), seen.end(), s) == seen.end()) seen.push_back(s);
  std::string out;
  for (const std::string& s : seen) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

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

std::vector<int64_t> gather_expert_tokens(ParallelGroups& groups, ModelForward& forward, const ShardSpec& shard,
                                          const ModelConfig& config, bool counted_here) {
  const int64_t E = std::max<int64_t>(config.num_experts, 1);
  std::vector<int64_t> expert_tokens(static_cast<size_t>(config.num_layers * E), 0);
  const std::vector<int64_t> local_counts = forward.expert_counts();
  if (counted_here)
    std::copy(local_counts.begin(), local_counts.end(),
              expert_tokens.begin() + static_cast<std::ptrdiff_t>(shard.layer_begin * E));
  groups.world->allreduce_host(expert_tokens, false);
  return expert_tokens;
}

std::vector<int64_t> gather_traffic(ParallelGroups& groups, int world_size) {
  std::vector<int64_t> traffic(static_cast<size_t>(world_size) * kRankFields, 0);
  const size_t me = static_cast<size_t>(groups.world_rank) * kRankFields;
  for (const auto& comm : {groups.tp, groups.stage, groups.replica, groups.pipeline, groups.world}) {
    if (!comm) continue;
    const Traffic t = comm->traffic();
    traffic[me] += t.sent;
    traffic[me + 1] += t.received;
  }
  groups.world->allreduce_host(traffic, false);
  return traffic;
}

RankPlaces gather_places(const Ops& ops, const DeviceBinding& binding) {
  const bool on_gpu = ops.device() == Device::Cuda && !binding.uuid.empty();
  RankPlaces p;
  p.hosts = allgather_strings(host_name(), MPI_COMM_WORLD);
  p.devices = allgather_strings(on_gpu ? ops.name() + " " + binding.uuid : ops.name(), MPI_COMM_WORLD);
  return p;
}

RunResults assemble_results(const RunFacts& run, const std::vector<RequestSpec>& specs,
                            const std::vector<Sequence>& all, const EngineReport& report,
                            const std::vector<int64_t>& expert_tokens, const std::vector<int64_t>& traffic) {
  const RunOptions& o = *run.options;
  const ModelConfig& config = *run.config;
  const Plan& plan = run.plan;
  const int world_size = run.world_size;
  const int64_t E = std::max<int64_t>(config.num_experts, 1);
  RunResults results;
  results.meta.command_line = o.command_line;
  results.meta.host = distinct(run.places.hosts);
  results.meta.device = distinct(run.places.devices);
  results.meta.backend = run.backend;
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
    r.preemptions = static_cast<int32_t>(s.preemptions);
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
      rec.host = run.places.hosts[static_cast<size_t>(r)];
      rec.device = run.places.devices[static_cast<size_t>(r)];
      results.ranks.push_back(std::move(rec));
    }
  }
  return results;
}

}  // namespace moetron::apps
