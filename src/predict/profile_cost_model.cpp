#include "moetron/predict/profile_cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

namespace {

TimeCurve curve_of(const Series& s) {
  std::vector<double> medians;
  for (const Measurement& m : s.times) medians.push_back(m.median_s);
  return TimeCurve(s.sizes, medians);
}

// Series of `table` grouped by their key without its last column, as surfaces over that column.
std::map<std::vector<int64_t>, TimeSurface> surfaces_over_last_key(const SeriesTable* table) {
  std::map<std::vector<int64_t>, TimeSurface> out;
  if (table == nullptr) return out;
  for (const Series& s : table->series) {
    const std::vector<int64_t> shape(s.key.begin(), s.key.end() - 1);
    out[shape].add(s.key.back(), curve_of(s));
  }
  return out;
}

// The moe_experts table's series split by the path each point's call took on the device: the
// bench calls `per_expert x experts` tokens of one slot each over all the model's experts (the
// table's largest expert count, *local), eagerly. Off CUDA every point is the tiles'. The GEMM
// path keeps the series of all experts only: with fewer, its points lie at many times the rows
// an expert of any step, which a surface would carry down to the step's rows unchanged.
void split_expert_points(const SeriesTable* table, bool cuda, ExpertGemmRule rule,
                         std::map<std::vector<int64_t>, TimeSurface>* tiles,
                         std::map<std::vector<int64_t>, TimeSurface>* gemms, int64_t* local_out) {
  if (table == nullptr) return;
  int64_t local = 1;
  for (const Series& s : table->series) local = std::max(local, s.key.back());
  *local_out = local;
  for (const Series& s : table->series) {
    const std::vector<int64_t> shape(s.key.begin(), s.key.end() - 1);
    std::vector<int64_t> sizes[2];
    std::vector<double> medians[2];
    for (size_t i = 0; i < s.sizes.size(); ++i) {
      const int64_t call_tokens = s.sizes[i] * s.key.back();
      const bool by_gemms = cuda && expert_call_by_gemms(call_tokens, 1, local, s.key[0], s.key[1], true, rule);
      sizes[by_gemms].push_back(s.sizes[i]);
      medians[by_gemms].push_back(s.times[i].median_s);
    }
    if (!sizes[0].empty()) (*tiles)[shape].add(s.key.back(), TimeCurve(sizes[0], medians[0]));
    if (!sizes[1].empty() && s.key.back() == local) (*gemms)[shape].add(local, TimeCurve(sizes[1], medians[1]));
  }
}

// One kernel_gap series' time, or -1.
double gap_of(const SeriesTable* table, int64_t in_graph) {
  const Series* s = table == nullptr ? nullptr : table->find({in_graph});
  return s == nullptr || s->times.empty() ? -1 : s->times.front().median_s;
}

}  // namespace

template <class Table>
const typename ProfileCostModel::Shapes<Table>::Entry* ProfileCostModel::Shapes<Table>::lookup(const std::vector<int64_t>& key, double work,
                                                     double* scale) const {
  const Entry* best = nullptr;
  double best_distance = 0;
  for (const Entry& e : entries) {
    const double distance = e.key == key ? -1 : std::abs(std::log(work / e.work));
    if (best == nullptr || distance < best_distance) best = &e, best_distance = distance;
  }
  if (best == nullptr) return nullptr;
  *scale = best->key == key ? 1.0 : work / best->work;
  return best;
}

namespace {

std::string key_text(const std::vector<int64_t>& key) {
  std::ostringstream os;
  for (size_t i = 0; i < key.size(); ++i) os << (i == 0 ? "[" : ",") << key[i];
  os << "]";
  return os.str();
}

}  // namespace

template <class Entry>
void ProfileCostModel::note_entry(const char* table, const Entry& entry, double scale, const std::string& reading) const {
  std::ostringstream os;
  os.precision(3);
  os << table << (scale == 1.0 ? " " : " nearest ") << key_text(entry.key);
  if (scale != 1.0) os << " x" << scale;
  os << ": " << reading;
  note_source(os.str());
}

ProfileCostModel::ProfileCostModel(const HardwareProfile& p, const CostModel& fallback) : fallback_(fallback) {
  if (const SeriesTable* t = p.find(tables::kGemm))
    for (const Series& s : t->series)
      gemm_.entries.push_back({s.key, static_cast<double>(s.key[0] * s.key[1]), curve_of(s)});
  // Each profile's points took the GEMMs by the rule it was measured under.
  expert_gemm_rule_ = expert_gemm_rule_of_profile(p.format_version, p.origin.kernels);
  std::map<std::vector<int64_t>, TimeSurface> tiles, gemms;
  split_expert_points(p.find(tables::kMoeExperts), p.origin.backend == "cuda", expert_gemm_rule_, &tiles, &gemms,
                      &gemm_experts_);
  for (auto& [shape, surface] : tiles)
    experts_.entries.push_back({shape, static_cast<double>(shape[0] * shape[1]), std::move(surface)});
  for (auto& [shape, surface] : gemms)
    experts_gemms_.entries.push_back({shape, static_cast<double>(shape[0] * shape[1]), std::move(surface)});
  for (auto& [shape, surface] : surfaces_over_last_key(p.find(tables::kMoeExpertsGemv)))
    experts_gemv_.entries.push_back({shape, static_cast<double>(shape[0] * shape[1]), std::move(surface)});
  for (auto& [shape, surface] : surfaces_over_last_key(p.find(tables::kAttentionDecode)))
    decode_.entries.push_back({shape, static_cast<double>(shape[1] * shape[2]), std::move(surface)});
  for (auto& [shape, surface] : surfaces_over_last_key(p.find(tables::kAttentionPrefill)))
    prefill_.entries.push_back({shape, static_cast<double>(shape[0] * shape[2]), std::move(surface)});
  if (const SeriesTable* t = p.find(tables::kAttentionInputs))
    for (const Series& s : t->series)
      attention_inputs_.entries.push_back({s.key, static_cast<double>((s.key[0] + 2 * s.key[1]) * s.key[2]), curve_of(s)});
  if (const SeriesTable* t = p.find(tables::kSampling))
    for (const Series& s : t->series) sampling_.entries.push_back({s.key, static_cast<double>(s.key[0]), curve_of(s)});
  for (auto& [shape, surface] : surfaces_over_last_key(p.find(tables::kHostStep)))
    host_step_.entries.push_back({shape, static_cast<double>(shape[0] * shape[1]), std::move(surface)});
  if (const SeriesTable* t = p.find(tables::kMemoryBound))
    for (const Series& s : t->series) memory_.push_back(curve_of(s));
  if (const SeriesTable* t = p.find(tables::kHbmCopy); t != nullptr && !t->series.empty()) {
    const Series& s = t->series.front();
    if (s.sizes.size() > 1) {
      copy_ = curve_of(s);
    } else if (s.sizes.size() == 1 && s.sizes.back() > 0) {  // older profiles: one large copy
      copy_s_per_byte_ = s.times.back().median_s / static_cast<double>(s.sizes.back());
    }
  }
  if (const SeriesTable* t = p.find(tables::kLaunchCost))
    for (const Series& s : t->series)
      if (!s.times.empty()) launch_s_[s.key[0]] = s.times.front().median_s;
  eager_gap_s_ = gap_of(p.find(tables::kKernelGap), 0);
  graph_gap_s_ = gap_of(p.find(tables::kKernelGap), 1);
  // Short calls timed as recorded nodes (format 3 where the backend records): per call is the
  // kernel plus a node's gap. Eagerly timed profiles: the kernel plus the launch gap.
  own_less_s_ = p.format_version >= 3 && graph_gap_s_ >= 0 ? graph_gap_s_ : std::max(0.0, eager_gap_s_);
  for (const TableSpec* spec : {&tables::kAllreduce, &tables::kAlltoall, &tables::kSendRecv, &tables::kBroadcast})
    if (const SeriesTable* t = p.find(*spec))
      for (const Series& s : t->series)
        collectives_[{spec->name, static_cast<int>(s.key[0]), s.key[1] != 0}] = curve_of(s);
  origin_ = p.origin.device + " (" + p.origin.backend + ", " + std::to_string(p.origin.world_size) + " ranks)";
}

double ProfileCostModel::own_time(double measured_s) const {
  return std::max(0.0, measured_s - own_less_s_);
}

double ProfileCostModel::gemm_s(int64_t m, int64_t n, int64_t k) const {
  double scale = 1;
  const auto* e = gemm_.lookup({n, k}, static_cast<double>(n) * k, &scale);
  if (e == nullptr) return fallback_.gemm_s(m, n, k);
  if (noting()) note_entry("gemm", *e, scale, e->table.reading(static_cast<double>(m), "m"));
  return scale * own_time(e->table.at(static_cast<double>(m)));
}

double ProfileCostModel::grouped_gemm_s(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k,
                                        int64_t call_tokens, bool by_gemms) const {
  // A path without points of its own: the GEMV's from the roofline; the tiles' and the GEMMs'
  // from each other (a profile measured before the GEMM path, or one that never reached it).
  const Shapes<TimeSurface>& path = expert_call_is_gemv(call_tokens) ? experts_gemv_
                                    : by_gemms    ? (experts_gemms_.entries.empty() ? experts_ : experts_gemms_)
                                    : experts_.entries.empty() ? experts_gemms_
                                                               : experts_;
  // The predictor asks for the gate/up GEMM as (n = 2 cols, k = hidden) and the down GEMM as
  // (n = hidden, k = cols). A shape measured exactly tells which; else a measured hidden size.
  struct Reading {
    int64_t hidden, cols;
    double share;  // of the measured moe_experts call: the GEMM's FLOPs
  };
  const Reading gate_up{k, n / 2, 2.0 / 3.0}, down{n, k, 1.0 / 3.0};
  auto measured = [&](const Reading& r, bool whole_key) {
    for (const auto& e : path.entries)
      if (e.key[0] == r.hidden && (!whole_key || e.key[1] == r.cols)) return true;
    return false;
  };
  const bool even = n % 2 == 0;
  const Reading& r = even && measured(gate_up, true) ? gate_up
                     : measured(down, true)          ? down
                     : even && measured(gate_up, false) ? gate_up
                                                        : down;
  double scale = 1;
  const auto* e = path.lookup({r.hidden, r.cols}, static_cast<double>(r.hidden) * r.cols, &scale);
  if (e == nullptr) return fallback_.grouped_gemm_s(tokens_per_expert, experts, n, k, call_tokens, by_gemms);
  const double x = static_cast<double>(tokens_per_expert), y = static_cast<double>(experts);
  if (noting()) {
    const char* table = &path == &experts_gemv_ ? "moe_experts_gemv" : &path == &experts_gemms_ ? "moe_experts (per-expert GEMM points)" : "moe_experts (tiles)";
    note_entry(table, *e, scale, e->table.reading(x, y, "rows/expert", "experts"));
  }
  // Measured with every expert active: one GEMM an expert, so fewer active experts take their share.
  if (&path == &experts_gemms_ && experts < gemm_experts_)
    scale *= static_cast<double>(experts) / static_cast<double>(gemm_experts_);
  return r.share * scale * own_time(e->table.at(x, y));
}

double ProfileCostModel::attention_s(int64_t rows, int64_t context, int64_t q_heads, int64_t kv_heads,
                                     int64_t head_dim, bool prefill) const {
  double scale = 1;
  const double work = static_cast<double>(prefill ? q_heads : kv_heads) * head_dim;
  const auto* e = (prefill ? prefill_ : decode_).lookup({q_heads, kv_heads, head_dim}, work, &scale);
  if (e == nullptr) return fallback_.attention_s(rows, context, q_heads, kv_heads, head_dim, prefill);
  const double x = static_cast<double>(rows), y = static_cast<double>(context);
  if (noting())
    note_entry(prefill ? "attention_prefill" : "attention_decode", *e, scale, e->table.reading(x, y, "rows", "context"));
  return scale * own_time(e->table.at(x, y));
}

double ProfileCostModel::memory_bound_s(int64_t bytes) const {
  if (memory_.empty()) return fallback_.memory_bound_s(bytes);
  double sum = 0;  // the mean over the kernels measured: each stands for some of the step's
  for (const TimeCurve& c : memory_) sum += own_time(c.at(static_cast<double>(bytes)));
  if (noting())
    note_source("memory_bound (mean of " + std::to_string(memory_.size()) + " kernels): " +
                memory_.front().reading(static_cast<double>(bytes), "bytes"));
  return sum / static_cast<double>(memory_.size());
}

double ProfileCostModel::copy_s(int64_t bytes) const {
  const double moved = 2.0 * static_cast<double>(bytes);  // read + written
  if (!copy_.empty()) {
    if (noting()) note_source("hbm_copy: " + copy_.reading(moved, "bytes r+w"));
    return own_time(copy_.at(moved));
  }
  if (copy_s_per_byte_ < 0) return fallback_.copy_s(bytes);
  note_source("hbm_copy: one large copy's rate");
  return copy_s_per_byte_ * moved;
}

double ProfileCostModel::attention_inputs_s(int64_t rows, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                            int64_t bytes) const {
  double scale = 1;
  const auto* e = attention_inputs_.lookup({q_heads, kv_heads, head_dim},
                                           static_cast<double>((q_heads + 2 * kv_heads) * head_dim), &scale);
  if (e == nullptr) return memory_bound_s(bytes);
  if (noting()) note_entry("attention_inputs", *e, scale, e->table.reading(static_cast<double>(rows), "rows"));
  return scale * own_time(e->table.at(static_cast<double>(rows)));
}

double ProfileCostModel::sampling_s(int64_t rows, int64_t vocab, int64_t bytes) const {
  double scale = 1;
  const auto* e = sampling_.lookup({vocab}, static_cast<double>(vocab), &scale);
  if (e == nullptr) return memory_bound_s(bytes);
  if (noting()) note_entry("sampling", *e, scale, e->table.reading(static_cast<double>(rows), "rows"));
  // Timed eagerly in every format (each call waits for the ids on the host): less the launch gap.
  return scale * std::max(0.0, e->table.at(static_cast<double>(rows)) - std::max(0.0, eager_gap_s_));
}

double ProfileCostModel::host_step_s(int64_t tokens, int64_t layers, int64_t experts, int64_t top_k) const {
  if (tokens <= 0) return 0;
  double scale = 1;
  const auto* e = host_step_.lookup({experts, top_k}, static_cast<double>(experts * top_k), &scale);
  if (e == nullptr) {
    note_source("no host_step table: zero");
    return 0;
  }
  const double x = static_cast<double>(tokens), y = static_cast<double>(layers);
  if (noting()) note_entry("host_step", *e, scale, e->table.reading(x, y, "tokens", "layers"));
  return scale * e->table.at(x, y);
}

double ProfileCostModel::kernel_overhead_s(bool in_graph) const {
  if (in_graph && graph_gap_s_ >= 0) {
    note_source("kernel_gap (graph)");
    return graph_gap_s_;
  }
  if (eager_gap_s_ >= 0) {
    note_source("kernel_gap (eager)");
    return eager_gap_s_;
  }
  return fallback_.kernel_overhead_s(in_graph);
}

double ProfileCostModel::launch_s(LaunchFamily family) const {
  const auto it = launch_s_.find(static_cast<int64_t>(family));
  if (it == launch_s_.end()) return kernel_overhead_s(false);  // as a launch gap, with its note
  if (noting()) note_source("launch_cost op " + std::to_string(static_cast<int64_t>(family)));
  return it->second;
}

void ProfileCostModel::attach_source_note(std::string* note) const {
  CostModel::attach_source_note(note);
  fallback_.attach_source_note(note);
}

const TimeCurve* ProfileCostModel::collective(const TableSpec& spec, int ranks, LinkScope scope, int64_t bytes) const {
  auto it = collectives_.find({spec.name, ranks, scope == LinkScope::InterNode});
  if (it == collectives_.end()) return nullptr;
  if (noting())
    note_source(std::string(spec.name) + " " + std::to_string(ranks) + " ranks " +
                (scope == LinkScope::InterNode ? "across nodes" : "inside a node") + ": " +
                it->second.reading(static_cast<double>(bytes), "bytes"));
  return &it->second;
}

double ProfileCostModel::allreduce_s(int64_t bytes, int ranks, LinkScope scope) const {
  if (ranks <= 1) return 0;
  const TimeCurve* c = collective(tables::kAllreduce, ranks, scope, bytes);
  return c ? c->at(static_cast<double>(bytes)) : fallback_.allreduce_s(bytes, ranks, scope);
}

double ProfileCostModel::alltoall_s(int64_t bytes_per_rank, int ranks, LinkScope scope) const {
  if (ranks <= 1) return 0;
  const TimeCurve* c = collective(tables::kAlltoall, ranks, scope, bytes_per_rank);
  return c ? c->at(static_cast<double>(bytes_per_rank)) : fallback_.alltoall_s(bytes_per_rank, ranks, scope);
}

double ProfileCostModel::send_recv_s(int64_t bytes, LinkScope scope) const {
  const TimeCurve* c = collective(tables::kSendRecv, 2, scope, bytes);
  return c ? c->at(static_cast<double>(bytes)) : fallback_.send_recv_s(bytes, scope);
}

double ProfileCostModel::broadcast_s(int64_t bytes, int ranks, LinkScope scope) const {
  if (ranks <= 1) return 0;
  const TimeCurve* c = collective(tables::kBroadcast, ranks, scope, bytes);
  return c ? c->at(static_cast<double>(bytes)) : fallback_.broadcast_s(bytes, ranks, scope);
}

std::string ProfileCostModel::describe() const {
  std::ostringstream os;
  os << "profile of " << origin_ << ": " << gemm_.entries.size() << " GEMM shapes, " << experts_.entries.size()
     << " expert shapes (" << experts_gemms_.entries.size() << " with per-expert GEMM points, " << experts_gemv_.entries.size() << " on the GEMV path"
     << (experts_gemv_.entries.empty() ? ": GEMV-path expert calls from the roofline figures), " : "), ") << decode_.entries.size() + prefill_.entries.size() << " attention shapes, "
     << collectives_.size() << " collective groups";
  if (collectives_.empty()) os << " (collectives from the roofline figures)";
  else os << " (other groups from the roofline figures)";
  if (host_step_.entries.empty()) os << "; no host_step table: the host's bookkeeping of a step priced at zero";
  return os.str();
}

}  // namespace moetron
