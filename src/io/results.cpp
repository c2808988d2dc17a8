#include "moetron/io/results.hpp"

#include <cmath>
#include <ctime>
#include <limits>
#include <set>
#include <utility>

#include "moetron/core/error.hpp"
#include "moetron/io/hdf5.hpp"

namespace moetron {
namespace {

// The int64 columns of /ranks, in the order docs/results-schema.md lists them.
const std::pair<const char*, int64_t RankRecord::*> kRankColumns[] = {
    {"pp_rank", &RankRecord::pp_rank},
    {"dp_rank", &RankRecord::dp_rank},
    {"tp_rank", &RankRecord::tp_rank},
    {"layer_begin", &RankRecord::layer_begin},
    {"layer_end", &RankRecord::layer_end},
    {"expert_begin", &RankRecord::expert_begin},
    {"expert_end", &RankRecord::expert_end},
    {"q_head_begin", &RankRecord::q_head_begin},
    {"q_head_end", &RankRecord::q_head_end},
    {"bytes_sent", &RankRecord::bytes_sent},
    {"bytes_received", &RankRecord::bytes_received},
    {"expert_tokens", &RankRecord::expert_tokens},
};

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  MOETRON_CHECK(gmtime_r(&now, &utc) != nullptr, "cannot read the clock for created_utc");
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// One value per row, as the column `get` picks it.
template <class T, class Row, class Get>
std::vector<T> column(const std::vector<Row>& rows, Get get) {
  std::vector<T> out;
  out.reserve(rows.size());
  for (const Row& r : rows) out.push_back(static_cast<T>(get(r)));
  return out;
}

// All requests' `field` vectors end to end, and the n + 1 offsets where each one starts.
template <class T>
std::vector<T> concatenated(const std::vector<RequestResult>& rs,
                            std::vector<T> RequestResult::*field) {
  std::vector<T> out;
  for (const RequestResult& r : rs) out.insert(out.end(), (r.*field).begin(), (r.*field).end());
  return out;
}
template <class T>
std::vector<int64_t> offsets(const std::vector<RequestResult>& rs,
                             std::vector<T> RequestResult::*field) {
  std::vector<int64_t> out{0};
  for (const RequestResult& r : rs) out.push_back(out.back() + static_cast<int64_t>((r.*field).size()));
  return out;
}

// The schema's root attributes, in the order docs/results-schema.md lists them.
std::vector<std::pair<std::string, std::string>> root_attributes(const RunMetadata& m) {
  return {{"moetron_version", m.moetron_version},
          {"git_commit", m.git_commit},
          {"command_line", m.command_line},
          {"host", m.host},
          {"device", m.device},
          {"backend", m.backend},
          {"plan", m.plan},
          {"model_config", m.model_config},
          {"created_utc", m.created_utc.empty() ? utc_now() : m.created_utc}};
}

// Results the engine assembled wrongly are a bug, but one that must not reach a file quietly.
void check_consistent(const RunResults& r, const std::string& path) {
  MOETRON_CHECK(r.logits_vocab_size >= 0, path << ": logits_vocab_size is negative");
  std::set<std::string> ids;
  for (const RequestResult& q : r.requests) {
    std::string who = path + ": request '" + q.id + "'";
    MOETRON_CHECK(ids.insert(q.id).second, who << " appears twice");
    MOETRON_CHECK(q.token_times_s.size() == q.output_tokens.size(),
                  who << " has " << q.token_times_s.size() << " token times for "
                      << q.output_tokens.size() << " output tokens");
    size_t want_logits = q.output_tokens.size() * static_cast<size_t>(r.logits_vocab_size);
    MOETRON_CHECK(q.logits.size() == want_logits,
                  who << " has " << q.logits.size() << " logits, expected " << want_logits << " ("
                      << q.output_tokens.size() << " tokens x vocabulary "
                      << r.logits_vocab_size << ")");
  }
  for (size_t layer = 0; layer < r.expert_tokens.size(); ++layer)
    MOETRON_CHECK(r.expert_tokens[layer].size() == r.expert_tokens[0].size(),
                  path << ": expert_tokens row " << layer << " has " << r.expert_tokens[layer].size()
                       << " experts, row 0 has " << r.expert_tokens[0].size());
  std::set<std::string> standard;
  for (const auto& [name, value] : root_attributes(r.meta)) standard.insert(name);
  for (const auto& [name, value] : r.meta.extra)
    MOETRON_CHECK(!standard.count(name) && !name.empty(),
                  path << ": extra attribute name '" << name << "' is empty or taken by the schema");
}

void write_metadata(h5::File& f, const RunMetadata& m) {
  for (const auto& [name, value] : root_attributes(m)) f.set_attribute("/", name, value);
  for (const auto& [name, value] : m.extra) f.set_attribute("/", name, value);
}

// When each request arrived, how long it queued, and its mean inter-token latency.
void write_request_arrivals(h5::File& f, const std::vector<RequestResult>& rs) {
  f.write("/requests/arrival_s", column<double>(rs, [](const RequestResult& q) { return q.arrival_s; }));
  f.write("/requests/queue_s", column<double>(rs, [](const RequestResult& q) { return q.queue_s; }));
  f.write("/requests/itl_mean_s",
          column<double>(rs, [](const RequestResult& q) { return mean_inter_token_s(q.token_times_s); }));
}

void write_requests(h5::File& f, const RunResults& r) {
  const auto& rs = r.requests;
  f.create_group("/requests");
  f.write("/requests/prompt_tokens", concatenated(rs, &RequestResult::prompt_tokens));
  f.write("/requests/prompt_offsets", offsets(rs, &RequestResult::prompt_tokens));
  f.write("/requests/output_tokens", concatenated(rs, &RequestResult::output_tokens));
  std::vector<int64_t> output_offsets = offsets(rs, &RequestResult::output_tokens);
  f.write("/requests/output_offsets", output_offsets);
  f.write("/requests/token_times_s", concatenated(rs, &RequestResult::token_times_s));
  f.write("/requests/ttft_s", column<double>(rs, [](const RequestResult& q) { return q.ttft_s; }));
  f.write("/requests/e2e_s", column<double>(rs, [](const RequestResult& q) { return q.e2e_s; }));
  write_request_arrivals(f, rs);
  f.write_strings("/requests/ids", column<std::string>(rs, [](const RequestResult& q) { return q.id; }));
  f.write("/requests/preemptions",
          column<int32_t>(rs, [](const RequestResult& q) { return q.preemptions; }));
  f.write_strings("/requests/finish_reason", column<std::string>(rs, [](const RequestResult& q) {
                    return finish_reason_name(q.finish_reason);
                  }));
  if (r.logits_vocab_size == 0) return;
  // Written request by request: the logits can be gigabytes, so never copied into one buffer.
  h5::RowWriter logits = f.create_rows("/requests/logits", h5::Type::Float32,
                                       {output_offsets.back(), r.logits_vocab_size});
  for (size_t i = 0; i < rs.size(); ++i)
    logits.write_rows(output_offsets[i], output_offsets[i + 1] - output_offsets[i],
                      rs[i].logits.data());
  logits.close();
}

void write_steps(h5::File& f, const std::vector<StepRecord>& steps) {
  f.create_group("/steps");
  f.write("/steps/batch_size", column<int32_t>(steps, [](const StepRecord& s) { return s.batch_size; }));
  f.write("/steps/num_tokens", column<int32_t>(steps, [](const StepRecord& s) { return s.num_tokens; }));
  f.write("/steps/is_prefill", column<int8_t>(steps, [](const StepRecord& s) { return s.is_prefill; }));
  f.write("/steps/seconds", column<double>(steps, [](const StepRecord& s) { return s.seconds; }));
  f.write("/steps/prefill_budget", column<int32_t>(steps, [](const StepRecord& s) { return s.prefill_budget; }));
}

void write_experts(h5::File& f, const std::vector<std::vector<int64_t>>& tokens) {
  f.create_group("/experts");
  std::vector<int64_t> flat;
  for (const auto& row : tokens) flat.insert(flat.end(), row.begin(), row.end());
  int64_t layers = static_cast<int64_t>(tokens.size());
  int64_t experts = tokens.empty() ? 0 : static_cast<int64_t>(tokens[0].size());
  f.write("/experts/tokens", flat, {layers, experts});
}

// The serving-latency attributes of /summary: names are a contract (perf/plots.py, study.py).
void write_latency_summary(h5::File& f, const RunSummary& s) {
  const std::pair<const char*, const LatencyPercentiles*> metrics[] = {
      {"ttft", &s.latency.ttft}, {"itl", &s.latency.itl}, {"e2e", &s.latency.e2e}};
  for (const auto& [name, p] : metrics) {
    f.set_attribute("/summary", std::string(name) + "_p50_s", p->p50);
    f.set_attribute("/summary", std::string(name) + "_p90_s", p->p90);
    f.set_attribute("/summary", std::string(name) + "_p99_s", p->p99);
  }
  f.set_attribute("/summary", "slo_ttft_s", s.slo.ttft_s);
  f.set_attribute("/summary", "slo_itl_s", s.slo.itl_s);
  f.set_attribute("/summary", "slo_met_fraction", s.latency.slo_met_fraction);
  f.set_attribute("/summary", "goodput_requests_per_s", s.latency.goodput_requests_per_s);
}

void write_summary(h5::File& f, const RunSummary& s) {
  f.create_group("/summary");
  f.set_attribute("/summary", "total_seconds", s.total_seconds);
  f.set_attribute("/summary", "requests", s.requests);
  f.set_attribute("/summary", "output_tokens", s.output_tokens);
  f.set_attribute("/summary", "output_tokens_per_s", s.output_tokens_per_s);
  f.set_attribute("/summary", "total_tokens_per_s", s.total_tokens_per_s);
  write_latency_summary(f, s);
}

void write_startup(h5::File& f, const StartupRecord& s) {
  f.create_group("/startup");
  f.set_attribute("/startup", "weights_seconds", s.weights_seconds);
  f.set_attribute("/startup", "weights_bytes_read", s.weights_bytes_read);
  f.set_attribute("/startup", "kv_cache_seconds", s.kv_cache_seconds);
  f.set_attribute("/startup", "graphs_seconds", s.graphs_seconds);
  f.set_attribute("/startup", "graphs", s.graphs);
  f.set_attribute("/startup", "total_seconds", s.total_seconds);
  f.set_attribute("/startup", "warmup_seconds", s.warmup_seconds);
}

void write_predictions(h5::File& f, const PlanPredictions& p) {
  if (p.candidates.empty()) return;
  using C = PlanCandidateRecord;
  const auto& cs = p.candidates;
  f.create_group("/predictions");
  f.set_attribute("/predictions", "figures", p.figures);
  f.set_attribute("/predictions", "chosen", p.chosen);
  f.set_attribute("/predictions", "explanation", p.explanation);
  f.set_attribute("/predictions", "ranks_per_device", p.ranks_per_device);
  f.write_strings("/predictions/plan", column<std::string>(cs, [](const C& c) { return c.plan; }));
  f.write("/predictions/fits", column<int8_t>(cs, [](const C& c) { return static_cast<int8_t>(c.fits); }));
  f.write_strings("/predictions/refusal", column<std::string>(cs, [](const C& c) { return c.refusal; }));
  const std::pair<const char*, double C::*> rates[] = {
      {"output_tokens_per_s", &C::output_tokens_per_s}, {"decode_tokens_per_s", &C::decode_tokens_per_s},
      {"prefill_tokens_per_s", &C::prefill_tokens_per_s}, {"decode_step_s", &C::decode_step_s},
      {"ttft_s", &C::ttft_s}, {"itl_s", &C::itl_s},
      {"ceiling_output_tokens_per_s", &C::ceiling_output_tokens_per_s},
      {"ceiling_decode_step_s", &C::ceiling_decode_step_s}};
  for (const auto& [name, member] : rates)
    f.write(std::string("/predictions/") + name, column<double>(cs, [m = member](const C& c) { return c.*m; }));
  f.write("/predictions/memory_per_rank", column<int64_t>(cs, [](const C& c) { return c.memory_per_rank; }));
  f.write("/predictions/batch", column<int64_t>(cs, [](const C& c) { return c.batch; }));
  f.write_strings("/predictions/bottleneck", column<std::string>(cs, [](const C& c) { return c.bottleneck; }));
}

void write_ranks(h5::File& f, const std::vector<RankRecord>& ranks, const std::string& plan) {
  f.create_group("/ranks");
  f.set_attribute("/ranks", "plan", plan);
  for (const auto& [name, member] : kRankColumns)
    f.write(std::string("/ranks/") + name,
            column<int64_t>(ranks, [member = member](const RankRecord& k) { return k.*member; }));
  f.write_strings("/ranks/description",
                  column<std::string>(ranks, [](const RankRecord& k) { return k.description; }));
  f.write_strings("/ranks/host", column<std::string>(ranks, [](const RankRecord& k) { return k.host; }));
  f.write_strings("/ranks/device", column<std::string>(ranks, [](const RankRecord& k) { return k.device; }));
}

// The routing beyond /experts/tokens: windows of steps and co-activation (empty: zero windows,
// zero counts, so the datasets are always there with their documented shapes).
void write_expert_routing(h5::File& f, const ExpertRouting& routing, int64_t layers, int64_t experts) {
  const int64_t windows = static_cast<int64_t>(routing.window_steps.size() / 2);
  f.write("/experts/tokens_by_window", routing.tokens_by_window, {windows, layers, experts});
  f.write("/experts/window_steps", routing.window_steps, {windows, 2});
  std::vector<int64_t> pairs = routing.coactivation;
  if (pairs.empty()) pairs.assign(static_cast<size_t>(layers * experts * experts), 0);
  f.write("/experts/coactivation", pairs, {layers, experts, experts});
}

// Where --redundant-experts put its copies: [layers, R, 2] of (expert, set).
void write_replica_placement(h5::File& f, const RunResults& r, int64_t layers) {
  MOETRON_CHECK(static_cast<int64_t>(r.replica_placement.size()) == layers * r.redundant_experts * 2,
                "results: " << r.replica_placement.size() << " replica placement values for " << layers << " layers x "
                            << r.redundant_experts << " redundant experts x 2");
  f.write("/experts/replicas", r.replica_placement, {layers, r.redundant_experts, 2});
  f.set_attribute("/experts/replicas", "redundant_experts", r.redundant_experts);
}

void write_rank_seconds(h5::File& f, const std::vector<RankRecord>& ranks) {
  const std::pair<const char*, double RankRecord::*> seconds[] = {
      {"expert_seconds", &RankRecord::expert_seconds},
      {"decode_comm_wait_seconds", &RankRecord::decode_comm_wait_seconds},
      {"prefill_comm_wait_seconds", &RankRecord::prefill_comm_wait_seconds}};
  for (const auto& [name, member] : seconds)
    f.write(std::string("/ranks/") + name, column<double>(ranks, [m = member](const RankRecord& k) { return k.*m; }));
}

void check_routing(const ExpertRouting& routing, size_t layers, size_t experts, const std::string& path) {
  const size_t windows = routing.window_steps.size() / 2;
  MOETRON_CHECK(routing.window_steps.size() % 2 == 0 && routing.tokens_by_window.size() == windows * layers * experts,
                path << ": " << routing.tokens_by_window.size() << " routed-token counts by window for " << windows
                     << " windows of " << layers << " layers x " << experts << " experts");
  MOETRON_CHECK(routing.coactivation.empty() || routing.coactivation.size() == layers * experts * experts,
                path << ": " << routing.coactivation.size() << " co-activation counts for " << layers << " layers x "
                     << experts << "^2 experts");
}

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Length: return "length";
    case FinishReason::Eos: return "eos";
  }
  return "?";
}

RunSummary summarize(const RunResults& r) {
  RunSummary s;
  s.total_seconds = r.total_seconds;
  s.requests = static_cast<int64_t>(r.requests.size());
  int64_t prompt_tokens = 0;
  for (const RequestResult& q : r.requests) {
    prompt_tokens += static_cast<int64_t>(q.prompt_tokens.size());
    s.output_tokens += static_cast<int64_t>(q.output_tokens.size());
  }
  // A rate over no time is undefined: NaN says so, where 0 or inf would look like a measurement.
  double nan = std::numeric_limits<double>::quiet_NaN();
  bool timed = r.total_seconds > 0;
  s.output_tokens_per_s = timed ? s.output_tokens / r.total_seconds : nan;
  s.total_tokens_per_s = timed ? (prompt_tokens + s.output_tokens) / r.total_seconds : nan;
  s.slo = r.slo;
  std::vector<std::vector<double>> token_times;
  for (const RequestResult& q : r.requests)
    if (!q.token_times_s.empty()) token_times.push_back(q.token_times_s);
  s.latency = summarize_latency(token_times, r.slo, r.total_seconds);
  return s;
}

void write_results(const std::string& path, const RunResults& results) {
  check_consistent(results, path);
  check_routing(results.routing, results.expert_tokens.size(),
                results.expert_tokens.empty() ? 0 : results.expert_tokens[0].size(), path);
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp);
    write_metadata(f, results.meta);
    write_requests(f, results);
    write_steps(f, results.steps);
    write_experts(f, results.expert_tokens);
    write_expert_routing(f, results.routing, static_cast<int64_t>(results.expert_tokens.size()),
                         results.expert_tokens.empty() ? 0 : static_cast<int64_t>(results.expert_tokens[0].size()));
    if (results.redundant_experts > 0)
      write_replica_placement(f, results, static_cast<int64_t>(results.expert_tokens.size()));
    write_summary(f, summarize(results));
    write_startup(f, results.startup);
    write_predictions(f, results.predictions);
    if (!results.ranks.empty()) write_ranks(f, results.ranks, results.meta.plan);
    if (!results.ranks.empty()) write_rank_seconds(f, results.ranks);
    for (const ResultsAttachment& a : results.attachments) a.write(f, a.group);
    f.close();
  });
}

// ---- reader -------------------------------------------------------------------------------------

std::vector<int32_t> read_int32(const std::string& path, const std::string& dataset) {
  return h5::File::open_read(path).read<int32_t>(dataset);
}

std::vector<int64_t> read_int64(const std::string& path, const std::string& dataset) {
  return h5::File::open_read(path).read<int64_t>(dataset);
}

std::vector<double> read_float64(const std::string& path, const std::string& dataset) {
  return h5::File::open_read(path).read<double>(dataset);
}

std::vector<float> read_float32(const std::string& path, const std::string& dataset,
                                std::vector<int64_t>* dims) {
  h5::File f = h5::File::open_read(path);
  if (dims) *dims = f.dims(dataset);
  return f.read<float>(dataset);
}

std::vector<std::string> read_strings(const std::string& path, const std::string& dataset) {
  return h5::File::open_read(path).read_strings(dataset);
}

std::vector<int64_t> read_dims(const std::string& path, const std::string& dataset) {
  return h5::File::open_read(path).dims(dataset);
}

std::string read_string_attribute(const std::string& path, const std::string& object,
                                  const std::string& name) {
  return h5::File::open_read(path).string_attribute(object, name);
}

double read_float64_attribute(const std::string& path, const std::string& object,
                              const std::string& name) {
  return h5::File::open_read(path).float64_attribute(object, name);
}

int64_t read_int64_attribute(const std::string& path, const std::string& object,
                             const std::string& name) {
  return h5::File::open_read(path).int64_attribute(object, name);
}

}  // namespace moetron
