#include "moetron/predict/plan_costs.hpp"

#include <algorithm>

namespace moetron {

namespace {

// Each measured point of a profile as the roofline counts it: work(key, size) over its fast-tail
// (p10) time, for `visit(work, seconds)`.
template <class Work, class Visit>
void each_point(const SeriesTable* table, Work work, Visit visit) {
  if (table == nullptr) return;
  for (const Series& s : table->series)
    for (size_t i = 0; i < s.sizes.size(); ++i)
      if (s.times[i].p10_s > 0) visit(work(s.key, s.sizes[i]), s.times[i].p10_s);
}

// The fastest FLOP and byte rates among the profile's kernels (0 where none was measured), each
// counted as the roofline counts that kernel, the byte rates apart for kernels that move at most
// `cache_bytes` (which a cache may hold) and more: priced by these rates, no measured point takes
// longer than it was measured to.
struct Rates {
  double flops = 0, cached_bytes = 0, streamed_bytes = 0;
};
Rates fastest_kernels(const HardwareProfile& p, int64_t cache_bytes) {
  Rates r;
  const auto visit = [&](const KernelWork& w, double seconds) {
    r.flops = std::max(r.flops, w.flops / seconds);
    double& rate = w.bytes <= static_cast<double>(cache_bytes) ? r.cached_bytes : r.streamed_bytes;
    rate = std::max(rate, w.bytes / seconds);
  };
  using Key = std::vector<int64_t>;
  each_point(p.find(tables::kGemm), [](const Key& k, int64_t m) { return gemm_work(m, k[0], k[1]); }, visit);
  // The expert call: its gate/up and down GEMMs (key hidden, expert_cols, experts; rows an expert).
  const auto expert_call = [](const Key& k, int64_t rows) {
    const KernelWork up = grouped_gemm_work(rows, k[2], 2 * k[1], k[0]), down = grouped_gemm_work(rows, k[2], k[0], k[1]);
    return KernelWork{up.flops + down.flops, up.bytes + down.bytes};
  };
  each_point(p.find(tables::kMoeExperts), expert_call, visit);
  each_point(p.find(tables::kMoeExpertsGemv), expert_call, visit);
  for (const bool prefill : {false, true})
    each_point(p.find(prefill ? tables::kAttentionPrefill : tables::kAttentionDecode),
               [prefill](const Key& k, int64_t rows) { return attention_work(rows, k[3], k[0], k[1], k[2], prefill); },
               visit);
  const auto moved = [](const Key&, int64_t bytes) { return KernelWork{0, static_cast<double>(bytes)}; };
  each_point(p.find(tables::kMemoryBound), moved, visit);
  each_point(p.find(tables::kHbmCopy), moved, visit);
  return r;
}

// A link's figures raised to what the profile's collectives of that scope reached (a sum of a
// latency and a bandwidth term is not a floor of each point at its own fastest terms, so the
// figures only ever move toward faster).
void raise_link(LinkFigures& link, const HardwareProfile& p, bool spans_nodes) {
  const auto of_scope = [&](const std::vector<int64_t>& key) { return key[0] > 1 && (key[1] != 0) == spans_nodes; };
  for (const auto& [spec, factor] : {std::pair{&tables::kAllreduce, 2.0}, std::pair{&tables::kAlltoall, 1.0}})
    each_point(p.find(*spec), [&](const std::vector<int64_t>& key, int64_t bytes) {
      if (!of_scope(key)) return KernelWork{};
      const double n = static_cast<double>(key[0]);
      return KernelWork{0, factor * (n - 1) / n * static_cast<double>(bytes)};  // nccl-tests' busbw
    }, [&](const KernelWork& w, double seconds) { link.bytes_per_s = std::max(link.bytes_per_s, w.bytes / seconds); });
  if (const SeriesTable* t = p.find(tables::kAllreduce))
    for (const Series& s : t->series)
      if (of_scope(s.key) && !s.times.empty() && s.times.front().p10_s > 0)
        link.latency_s = std::min(link.latency_s, s.times.front().p10_s / collective_hops(static_cast<int>(s.key[0])));
}

}  // namespace

HardwareFigures ceiling_figures(HardwareFigures f, const HardwareProfile* profile) {
  f.launch_s = 0;
  f.graph_node_s = 0;
  if (profile != nullptr) {
    const Rates fastest = fastest_kernels(*profile, f.cache_bytes);
    if (fastest.flops > 0) f.gemm_flops = fastest.flops;
    // Kernels larger than the cache stream from memory at the fastest such rate, and up to a
    // cache's worth of any kernel's bytes at the fastest rate of all (never below the stream's,
    // so that a point beyond the cache, priced partly at it, still costs no more than measured).
    // Without such points every byte is priced at the fastest rate seen.
    const double fastest_bytes = std::max(fastest.cached_bytes, fastest.streamed_bytes);
    if (fastest.streamed_bytes > 0 && f.cache_bytes > 0) {
      f.hbm_bytes_per_s = fastest.streamed_bytes;
      f.cache_bytes_per_s = fastest_bytes;
    } else if (fastest_bytes > 0) {
      f.hbm_bytes_per_s = fastest_bytes;
    }
    raise_link(f.intra, *profile, false);
    raise_link(f.inter, *profile, true);
  }
  f.name = profile != nullptr ? "ceiling (the profile's fastest kernels; links: " + f.name + " or faster)"
                               : f.name + " ceiling";
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
