#include "moetron/report/load_report.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <numeric>
#include <sstream>

#include "moetron/core/atomic_file.hpp"
#include "moetron/core/error.hpp"
#include "moetron/io/hdf5.hpp"
#include "moetron/model/routing_skew.hpp"
#include "moetron/parallel/plan.hpp"

namespace moetron {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Row `row` of a [rows x width] array.
std::vector<int64_t> row_of(const std::vector<int64_t>& all, size_t row, size_t width) {
  return {all.begin() + static_cast<std::ptrdiff_t>(row * width), all.begin() + static_cast<std::ptrdiff_t>((row + 1) * width)};
}

std::vector<int64_t> dims_of(const h5::File& f, const std::string& name, size_t rank) {
  MOETRON_CHECK(f.exists(name), f.path() << ": no " << name << " (not a moetron results file, or one from before it was recorded)");
  std::vector<int64_t> d = f.dims(name);
  MOETRON_CHECK(d.size() == rank, f.path() << ":" << name << " has " << d.size() << " dimensions, expected " << rank);
  return d;
}

// Per layer and expert, the sets holding its redundant copies (/experts/replicas, [layers, R,
// 2] of (expert, set)); empty without them, or when --ep overrides the plan they were placed for.
using LayerCopies = std::vector<std::vector<std::vector<int64_t>>>;
LayerCopies read_copies(const h5::File& f, size_t layers, int64_t experts, bool plan_ep) {
  LayerCopies copies;
  if (!f.exists("/experts/replicas") || !plan_ep) return copies;
  const std::vector<int64_t> d = dims_of(f, "/experts/replicas", 3);
  MOETRON_CHECK(static_cast<size_t>(d[0]) == layers && d[2] == 2,
                f.path() << ":/experts/replicas is not [" << layers << ", R, 2]");
  const std::vector<int64_t> placed = f.read<int64_t>("/experts/replicas");
  copies.assign(layers, std::vector<std::vector<int64_t>>(static_cast<size_t>(experts)));
  for (size_t l = 0; l < layers; ++l)
    for (int64_t i = 0; i < d[1]; ++i) {
      const int64_t e = placed[(l * static_cast<size_t>(d[1]) + static_cast<size_t>(i)) * 2];
      if (e < 0) continue;
      MOETRON_CHECK(e < experts, f.path() << ":/experts/replicas names expert " << e << " of " << experts);
      copies[l][static_cast<size_t>(e)].push_back(placed[(l * static_cast<size_t>(d[1]) + static_cast<size_t>(i)) * 2 + 1]);
    }
  return copies;
}

// One layer's set loads, its replicated experts split between their copies.
std::vector<int64_t> layer_set_loads(const std::vector<int64_t>& loads, int64_t ep, const LayerCopies& copies,
                                     size_t layer) {
  return copies.empty() ? set_loads(loads, ep) : set_loads(loads, ep, copies[layer]);
}

// The (window, MoE layer) phases' set loads, and each window's summed set loads.
void add_windows(const h5::File& f, LoadReport& r, size_t layers, const LayerCopies& copies) {
  const std::vector<int64_t> d = dims_of(f, "/experts/tokens_by_window", 3);
  const std::vector<int64_t> by_window = f.read<int64_t>("/experts/tokens_by_window");
  r.window_steps = f.read<int64_t>("/experts/window_steps");
  const size_t windows = static_cast<size_t>(d[0]), E = static_cast<size_t>(r.experts);
  std::vector<int64_t> phases;
  r.ep_tokens_by_window.assign(windows * static_cast<size_t>(r.ep), 0);
  for (size_t w = 0; w < windows; ++w)
    for (int64_t layer : r.moe_layers) {
      const std::vector<int64_t> sets = layer_set_loads(row_of(by_window, w * layers + static_cast<size_t>(layer), E),
                                                        r.ep, copies, static_cast<size_t>(layer));
      phases.insert(phases.end(), sets.begin(), sets.end());
      for (size_t s = 0; s < sets.size(); ++s) r.ep_tokens_by_window[w * static_cast<size_t>(r.ep) + s] += sets[s];
    }
  r.expert_wait_share = phases.empty() ? kNaN : wait_share(phases, r.ep);
}

// The load each rank's ranges imply (with redundant experts, its set's share), and what the
// ranks measured (parallel runs only).
void add_ranks(const h5::File& f, LoadReport& r, const std::vector<int64_t>& tokens, const LayerCopies& copies) {
  if (!f.exists("/ranks/expert_tokens")) return;
  const auto column = [&](const char* name) { return f.read<int64_t>(std::string("/ranks/") + name); };
  const std::vector<int64_t> lb = column("layer_begin"), le = column("layer_end"), eb = column("expert_begin"),
                             ee = column("expert_end");
  const size_t E = static_cast<size_t>(r.experts);
  for (size_t k = 0; k < lb.size(); ++k) {
    int64_t sum = 0;
    for (int64_t l = lb[k]; l < le[k]; ++l) {
      if (!copies.empty() && ee[k] > eb[k]) {
        const size_t set = static_cast<size_t>(eb[k] / (ee[k] - eb[k]));
        sum += layer_set_loads(row_of(tokens, static_cast<size_t>(l), E), r.ep, copies, static_cast<size_t>(l))[set];
        continue;
      }
      for (int64_t e = eb[k]; e < ee[k]; ++e) sum += tokens[static_cast<size_t>(l) * E + static_cast<size_t>(e)];
    }
    r.rank_expected_tokens.push_back(sum);
  }
  r.rank_expert_tokens = column("expert_tokens");
  r.rank_expert_seconds = f.read<double>("/ranks/expert_seconds");
  const std::vector<double> step_seconds = f.read<double>("/steps/seconds");
  const double run = std::accumulate(step_seconds.begin(), step_seconds.end(), 0.0);
  const double busiest = *std::max_element(r.rank_expert_seconds.begin(), r.rank_expert_seconds.end());
  r.expert_time_share = run > 0 && busiest > 0 ? busiest / run : kNaN;
}

void add_law(const h5::File& f, LoadReport& r) {
  if (!f.has_attribute("/", "routing_skew")) return;
  r.routing_skew = f.string_attribute("/", "routing_skew");
  const RoutingSkew skew = parse_routing_skew(r.routing_skew);
  const size_t E = static_cast<size_t>(r.experts);
  double sum = 0;
  for (size_t i = 0; i < r.moe_layers.size(); ++i) {
    const std::vector<int64_t> loads = row_of(r.layer_tokens, i, E);
    sum += skew.law == SkewLaw::Zipf ? zipf_exponent(loads) : top_share(loads, skew.hot_experts);
  }
  r.law_asked = skew.law == SkewLaw::Zipf ? skew.exponent : skew.hot_fraction;
  r.law_measured = r.moe_layers.empty() ? kNaN : sum / static_cast<double>(r.moe_layers.size());
}

}  // namespace

LoadReport analyze_results(const std::string& results, int64_t top, int64_t ep) {
  const h5::File f = h5::File::open_read(results);
  LoadReport r;
  r.source = results;
  const std::vector<int64_t> d = dims_of(f, "/experts/tokens", 2);
  const size_t layers = static_cast<size_t>(d[0]);
  r.experts = d[1];
  const size_t E = static_cast<size_t>(r.experts);
  const std::vector<int64_t> tokens = f.read<int64_t>("/experts/tokens");
  r.overall_tokens.assign(E, 0);
  for (size_t l = 0; l < layers; ++l) {
    const std::vector<int64_t> row = row_of(tokens, l, E);
    if (std::all_of(row.begin(), row.end(), [](int64_t v) { return v == 0; })) continue;
    r.moe_layers.push_back(static_cast<int64_t>(l));
    r.layer_tokens.insert(r.layer_tokens.end(), row.begin(), row.end());
    r.layer_stats.push_back(load_stats(row));
    for (size_t e = 0; e < E; ++e) r.overall_tokens[e] += row[e];
  }
  r.overall = load_stats(r.overall_tokens);
  r.hot = hottest(r.overall_tokens, top);
  r.cold = coldest(r.overall_tokens, top);
  dims_of(f, "/experts/coactivation", 3);
  r.pairs = top_pairs(f.read<int64_t>("/experts/coactivation"), static_cast<int64_t>(layers), r.experts, top);

  r.plan = f.string_attribute("/", "plan");
  r.ep = ep > 0 ? ep : parse_plan(r.plan).ep;
  MOETRON_CHECK(r.ep <= r.experts, results << ": ep=" << r.ep << " sets for " << r.experts << " experts");
  const LayerCopies copies = read_copies(f, layers, r.experts, ep <= 0 || ep == parse_plan(r.plan).ep);
  r.redundant_experts = copies.empty() ? 0 : f.dims("/experts/replicas")[1];
  r.ep_tokens.assign(static_cast<size_t>(r.ep), 0);
  for (int64_t l : r.moe_layers) {
    const std::vector<int64_t> sets = layer_set_loads(row_of(tokens, static_cast<size_t>(l), E), r.ep, copies,
                                                      static_cast<size_t>(l));
    for (size_t s = 0; s < sets.size(); ++s) r.ep_tokens[s] += sets[s];
  }
  add_windows(f, r, layers, copies);
  r.expert_time_share = kNaN;
  add_ranks(f, r, tokens, copies);
  r.step_time_lost_share = r.ep == 1 ? 0.0 : r.expert_wait_share * r.expert_time_share;
  add_law(f, r);
  return r;
}

std::string format_load_report(const LoadReport& r) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(3);
  const auto row = [&os](const std::string& name, const LoadStats& s, int64_t tokens) {
    os << std::left << std::setw(9) << name << std::right << std::setw(12) << tokens << std::setw(8) << s.gini
       << std::setw(10) << s.imbalance << std::setw(8) << s.cv << std::setw(9) << s.entropy << std::setw(8)
       << s.zipf_exponent << "\n";
  };
  os << "expert load of " << r.source << " (" << r.moe_layers.size() << " MoE layers, " << r.experts
     << " experts; entropy normalised to [0, 1], zipf: fitted exponent)\n";
  os << std::left << std::setw(9) << "layer" << std::right << std::setw(12) << "tokens" << std::setw(8) << "gini"
     << std::setw(10) << "max/mean" << std::setw(8) << "cv" << std::setw(9) << "entropy" << std::setw(8) << "zipf"
     << "\n";
  const size_t E = static_cast<size_t>(r.experts);
  for (size_t i = 0; i < r.moe_layers.size(); ++i) {
    const std::vector<int64_t> loads = row_of(r.layer_tokens, i, E);
    row(std::to_string(r.moe_layers[i]), r.layer_stats[i], std::accumulate(loads.begin(), loads.end(), int64_t{0}));
  }
  row("overall", r.overall, std::accumulate(r.overall_tokens.begin(), r.overall_tokens.end(), int64_t{0}));
  const double total = std::max<double>(1.0, static_cast<double>(std::accumulate(r.overall_tokens.begin(), r.overall_tokens.end(), int64_t{0})));
  const auto experts = [&](const char* what, const std::vector<int64_t>& list) {
    os << what;
    for (int64_t e : list) os << " " << e << " (" << 100.0 * static_cast<double>(r.overall_tokens[static_cast<size_t>(e)]) / total << "%)";
    os << "\n";
  };
  experts("hot experts (share of all token-slots):", r.hot);
  experts("cold experts:", r.cold);
  os << "most frequent co-activated pairs (layer: a+b tokens):";
  for (const PairCount& p : r.pairs) os << " " << p.layer << ": " << p.a << "+" << p.b << " " << p.count << ";";
  os << "\nexpert parallelism (plan " << r.plan << ", ep=" << r.ep;
  if (r.redundant_experts > 0)
    os << ", " << r.redundant_experts << " redundant experts per layer, their tokens split evenly between copies";
  os << "), load per set:";
  for (int64_t v : r.ep_tokens) os << " " << v;
  os << "\n  expert compute lost waiting for the busiest set: " << 100 * r.expert_wait_share
     << "% (1 - sum mean / sum max over windows x layers); of step time: " << 100 * r.step_time_lost_share
     << "% (times the busiest rank's expert share of step time, " << 100 * r.expert_time_share << "%)\n";
  for (size_t k = 0; k < r.rank_expert_tokens.size(); ++k)
    os << "  rank " << k << ": " << r.rank_expert_tokens[k] << " token-slots computed (" << r.rank_expected_tokens[k]
       << " by its layers and experts), " << r.rank_expert_seconds[k] << " s in expert compute\n";
  if (!r.routing_skew.empty())
    os << "routing skew asked: " << r.routing_skew << "; measured "
       << (r.routing_skew.rfind("zipf", 0) == 0 ? "zipf exponent " : "share of the hot experts ") << r.law_measured
       << " (mean over MoE layers; asked " << r.law_asked << ")\n";
  return os.str();
}

void write_load_report(const std::string& path, const LoadReport& r) {
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp);
    f.set_attribute("/", "source", r.source);
    const auto stat = [&](double LoadStats::*field) {
      std::vector<double> v;
      for (const LoadStats& s : r.layer_stats) v.push_back(s.*field);
      return v;
    };
    const std::pair<const char*, double LoadStats::*> kStats[] = {{"gini", &LoadStats::gini},
                                                                  {"imbalance", &LoadStats::imbalance},
                                                                  {"cv", &LoadStats::cv},
                                                                  {"entropy", &LoadStats::entropy},
                                                                  {"zipf_exponent", &LoadStats::zipf_exponent}};
    const int64_t M = static_cast<int64_t>(r.moe_layers.size());
    f.create_group("/layers");
    f.write("/layers/index", r.moe_layers);
    f.write("/layers/tokens", r.layer_tokens, {M, r.experts});
    f.create_group("/overall");
    f.write("/overall/tokens", r.overall_tokens);
    for (const auto& [name, field] : kStats) {
      f.write(std::string("/layers/") + name, stat(field));
      f.set_attribute("/overall", name, r.overall.*field);
    }
    f.create_group("/experts");
    f.write("/experts/hot", r.hot);
    f.write("/experts/cold", r.cold);
    f.create_group("/pairs");
    const auto pair_column = [&](int64_t PairCount::*field) {
      std::vector<int64_t> v;
      for (const PairCount& p : r.pairs) v.push_back(p.*field);
      return v;
    };
    f.write("/pairs/layer", pair_column(&PairCount::layer));
    f.write("/pairs/a", pair_column(&PairCount::a));
    f.write("/pairs/b", pair_column(&PairCount::b));
    f.write("/pairs/count", pair_column(&PairCount::count));
    f.create_group("/ep");
    f.set_attribute("/ep", "plan", r.plan);
    f.set_attribute("/ep", "ep", r.ep);
    f.set_attribute("/ep", "redundant_experts", r.redundant_experts);
    f.set_attribute("/ep", "expert_wait_share", r.expert_wait_share);
    f.set_attribute("/ep", "expert_time_share", r.expert_time_share);
    f.set_attribute("/ep", "step_time_lost_share", r.step_time_lost_share);
    f.write("/ep/tokens", r.ep_tokens);
    const int64_t windows = static_cast<int64_t>(r.window_steps.size() / 2);
    f.write("/ep/tokens_by_window", r.ep_tokens_by_window, {windows, r.ep});
    f.write("/ep/window_steps", r.window_steps, {windows, 2});
    if (!r.rank_expert_tokens.empty()) {
      f.create_group("/ranks");
      f.write("/ranks/expected_tokens", r.rank_expected_tokens);
      f.write("/ranks/expert_tokens", r.rank_expert_tokens);
      f.write("/ranks/expert_seconds", r.rank_expert_seconds);
    }
    if (!r.routing_skew.empty()) {
      f.create_group("/law");
      f.set_attribute("/law", "routing_skew", r.routing_skew);
      f.set_attribute("/law", "asked", r.law_asked);
      f.set_attribute("/law", "measured", r.law_measured);
    }
    f.close();
  });
}

}  // namespace moetron
