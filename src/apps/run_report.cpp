#include "run_report.hpp"

#include <algorithm>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "moetron/core/log.hpp"
#include "moetron/engine/gather.hpp"  // kRankFields

namespace moetron::apps {
namespace {


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
  // Prefill in all, and without its first step: that one also pays one-off costs (cuBLASLt
  // algorithm choice, workspaces, first touches), which weigh heavily in a short benchmark.
  double prefill_s = 0, first_prefill_s = 0;
  int64_t prefill_tokens = 0, first_prefill_tokens = 0, prefill_steps = 0;
  std::map<int32_t, std::vector<double>> decode;  // batch size -> step seconds
  for (const StepRecord& st : steps) {
    if (st.is_prefill) {
      if (prefill_steps++ == 0) {
        first_prefill_s = st.seconds;
        first_prefill_tokens = st.num_tokens;
      }
      prefill_s += st.seconds;
      prefill_tokens += st.num_tokens;
    } else {
      decode[st.batch_size].push_back(st.seconds);
    }
  }
  if (prefill_tokens > 0) {
    std::ostringstream os;
    os << "prefill: " << prefill_tokens << " tokens at " << static_cast<int64_t>(prefill_tokens / prefill_s)
       << " tok/s (" << prefill_steps << " steps";
    const double later_s = prefill_s - first_prefill_s;
    if (prefill_steps > 1 && later_s > 0)
      os << "; after the first: " << static_cast<int64_t>((prefill_tokens - first_prefill_tokens) / later_s)
         << " tok/s";
    LOG_INFO(os.str() << ")");
  }
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

std::string describe_latency(const RunSummary& s) {
  const LatencySummary& l = s.latency;
  std::ostringstream os;
  os << std::setprecision(4) << "latency p50/p90/p99: TTFT " << l.ttft.p50 * 1e3 << "/" << l.ttft.p90 * 1e3 << "/"
     << l.ttft.p99 * 1e3 << " ms, ITL " << l.itl.p50 * 1e3 << "/" << l.itl.p90 * 1e3 << "/" << l.itl.p99 * 1e3
     << " ms, e2e " << l.e2e.p50 << "/" << l.e2e.p90 << "/" << l.e2e.p99 << " s; goodput "
     << l.goodput_requests_per_s << " requests/s (" << l.slo_met << " of " << s.requests << " met TTFT <= "
     << s.slo.ttft_s << " s and mean ITL <= " << s.slo.itl_s << " s)";
  return os.str();
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
  results.meta.extra["prefill_chunk"] = prefill_chunk_text(o.prefill_chunk);  // the study's factor
  results.meta.extra["admission"] = admission_text(o.admission);              // and another
  if (o.prefill_chunk == kPrefillChunkAuto) {
    std::ostringstream ratio;
    ratio << o.itl_target_ratio;
    results.meta.extra["itl_target_ratio"] = ratio.str();
  }
  results.total_seconds = report.total_seconds;
  results.steps = report.steps;
  results.logits_vocab_size = o.save_logits ? config.vocab_size : 0;
  results.slo = o.slo;
  for (const Sequence& s : all) {
    RequestResult r;
    r.id = specs[static_cast<size_t>(s.index)].id;
    r.prompt_tokens = specs[static_cast<size_t>(s.index)].prompt_tokens;
    r.output_tokens = s.output;
    r.token_times_s = s.token_times_s;
    r.ttft_s = s.token_times_s.empty() ? 0 : s.token_times_s.front();
    r.e2e_s = s.token_times_s.empty() ? 0 : s.token_times_s.back();
    r.arrival_s = s.arrival_s;
    r.queue_s = s.admitted_s - s.arrival_s;
    r.finish_reason = s.finish_reason;
    r.preemptions = static_cast<int32_t>(s.preemptions);
    r.logits = s.logits;
    results.requests.push_back(std::move(r));
  }
  for (int64_t l = 0; l < config.num_layers; ++l)
    results.expert_tokens.emplace_back(expert_tokens.begin() + l * E, expert_tokens.begin() + (l + 1) * E);
  if (world_size > 1) {
    for (int r = 0; r < world_size; ++r) {
      const ShardLayout l = layout_for(plan, config, r);
      const ShardSpec& s = l.shard;
      RankRecord rec;
      rec.pp_rank = l.coords.pp;
      rec.dp_rank = l.coords.dp;
      rec.tp_rank = l.coords.tp;
      rec.layer_begin = s.layer_begin;
      rec.layer_end = s.layer_end;
      rec.expert_begin = s.expert_begin;
      rec.expert_end = s.experts().end;
      rec.q_head_begin = s.q_head_begin;
      rec.q_head_end = s.q_heads().end;
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

void add_expert_routing(RunResults& results, const ExpertRouting& routing, const RanksExpertWork& work,
                        const std::string& routing_skew) {
  results.routing = routing;
  for (size_t r = 0; r < results.ranks.size(); ++r) {
    results.ranks[r].expert_tokens = work.tokens[r];
    results.ranks[r].expert_seconds = work.seconds[r];
  }
  if (!routing_skew.empty()) results.meta.extra["routing_skew"] = routing_skew;
}

void add_comm_wait(RunResults& results, const RanksCommWait& wait) {
  for (size_t r = 0; r < results.ranks.size(); ++r) {
    results.ranks[r].decode_comm_wait_seconds = wait.decode_s[r];
    results.ranks[r].prefill_comm_wait_seconds = wait.prefill_s[r];
  }
}

RankPlaces emulated_places(const RankPlaces& here, int plan_world) {
  MOETRON_CHECK(here.hosts.size() == 1 && here.devices.size() == 1,
                "an emulated rank runs alone, but " << here.hosts.size() << " places were gathered");
  RankPlaces all;
  all.hosts.assign(static_cast<size_t>(plan_world), here.hosts.front());
  all.devices.assign(static_cast<size_t>(plan_world), here.devices.front());
  return all;
}

void mark_emulated(RunResults& results, const Emulation& emulation, const Plan& plan) {
  results.meta.extra["emulated_rank"] = std::to_string(emulation.rank);
  results.meta.extra["emulated_world"] = std::to_string(emulation.world);
  results.meta.extra["emulated_plan"] = plan.to_string();
  results.meta.extra["emulated_peers"] = emulated_peers_name(emulation.peers);
}

}  // namespace moetron::apps
