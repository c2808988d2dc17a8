#include "moetron/predict/plan_costs.hpp"

#include <algorithm>
#include <cmath>

namespace moetron {

namespace {

// The fastest rate a table's points reached: max over points of work(key, size) / p10 time.
template <class Work>
double fastest_rate(const SeriesTable* table, Work work) {
  double best = 0;
  if (table == nullptr) return best;
  for (const Series& s : table->series)
    for (size_t i = 0; i < s.sizes.size(); ++i)
      if (s.times[i].p10_s > 0) best = std::max(best, work(s.key, static_cast<double>(s.sizes[i])) / s.times[i].p10_s);
  return best;
}

int hops(int ranks) { return static_cast<int>(std::ceil(std::log2(static_cast<double>(ranks)))); }

// A link's figures raised to what the profile's collectives of that scope reached.
void raise_link(LinkFigures& link, const HardwareProfile& p, bool spans_nodes) {
  const auto of_scope = [&](const std::vector<int64_t>& key) { return key[0] > 1 && (key[1] != 0) == spans_nodes; };
  const auto busbw = [&](const TableSpec& spec, double factor_of_n) {
    return fastest_rate(p.find(spec), [&](const std::vector<int64_t>& key, double bytes) {
      if (!of_scope(key)) return 0.0;
      const double n = static_cast<double>(key[0]);
      return factor_of_n * (n - 1) / n * bytes;
    });
  };
  link.bytes_per_s = std::max({link.bytes_per_s, busbw(tables::kAllreduce, 2.0), busbw(tables::kAlltoall, 1.0)});
  if (const SeriesTable* t = p.find(tables::kAllreduce))
    for (const Series& s : t->series)
      if (of_scope(s.key) && !s.times.empty() && s.times.front().p10_s > 0)
        link.latency_s = std::min(link.latency_s, s.times.front().p10_s / hops(static_cast<int>(s.key[0])));
}

}  // namespace

HardwareFigures ceiling_figures(HardwareFigures f, const HardwareProfile* profile) {
  f.launch_s = 0;
  f.graph_node_s = 0;
  if (profile != nullptr) {
    const auto gemm_flops = [](const std::vector<int64_t>& key, double m) {
      return 2 * m * static_cast<double>(key[0]) * static_cast<double>(key[1]);
    };
    const auto copied_bytes = [](const std::vector<int64_t>&, double bytes) { return bytes; };
    f.gemm_flops = std::max(f.gemm_flops, fastest_rate(profile->find(tables::kGemm), gemm_flops));
    f.hbm_bytes_per_s = std::max(f.hbm_bytes_per_s, fastest_rate(profile->find(tables::kHbmCopy), copied_bytes));
    raise_link(f.intra, *profile, false);
    raise_link(f.inter, *profile, true);
  }
  f.name += " ceiling";
  return f;
}

PlanCosts::PlanCosts(const HardwareFigures& figures, const HardwareProfile* profile)
    : roofline_(figures),
      measured_(profile != nullptr ? std::make_unique<ProfileCostModel>(*profile, roofline_) : nullptr),
      ceiling_(ceiling_figures(figures, profile)) {}

const CostModel& PlanCosts::estimate() const {
  return measured_ ? static_cast<const CostModel&>(*measured_) : roofline_;
}

}  // namespace moetron
