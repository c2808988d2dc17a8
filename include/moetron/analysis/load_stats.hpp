// Expert-load statistics: how unevenly a vector of loads (routed token-slots per expert, or per
// expert-parallel set) is spread. Pure functions; nothing here knows how the loads were made.
//
//   gini       sum_i sum_j |x_i - x_j| / (2 n^2 mean): 0 when equal, (n - 1) / n when one holds all
//   imbalance  max / mean: 1 when equal, n when one holds all
//   cv         population standard deviation / mean
//   entropy    -sum p_i ln p_i / ln n with p_i = x_i / sum x: normalised to [0, 1], 1 when
//              equal, 0 when one holds all (the base cancels; 1 for n = 1)
//   zipf       the exponent S of the least-squares line ln x_(r) = c - S ln r through the loads
//              sorted in descending order (rank r from 1), zero loads left out: S = 0 for equal
//              loads, S of a law x_(r) ~ r^-S
// Every statistic of an all-zero or empty vector is NaN.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace moetron {

struct LoadStats {
  double gini = 0, imbalance = 0, cv = 0, entropy = 0, zipf_exponent = 0;
};

LoadStats load_stats(const std::vector<int64_t>& loads);
double gini_coefficient(const std::vector<int64_t>& loads);
double zipf_exponent(const std::vector<int64_t>& loads);
// The share of the total that the `k` largest loads hold.
double top_share(const std::vector<int64_t>& loads, int64_t k);
// Indices of the n largest (hot) or smallest (cold) loads, ties to the lower index first.
std::vector<int64_t> hottest(const std::vector<int64_t>& loads, int64_t n);
std::vector<int64_t> coldest(const std::vector<int64_t>& loads, int64_t n);

// Summed loads of `sets` contiguous sets of the entries (parallel/plan's expert sets).
std::vector<int64_t> set_loads(const std::vector<int64_t>& loads, int64_t sets);
// The same with redundant experts: copies[e] lists the further sets holding a copy of entry e
// (empty: none; copies itself may be empty). Its load is split evenly between its own set and
// those, the remainder one each to the first (the forward splits a replicated expert's tokens
// between its copies token by token, so this is the split on average).
std::vector<int64_t> set_loads(const std::vector<int64_t>& loads, int64_t sets,
                               const std::vector<std::vector<int64_t>>& copies);

// Share of the sets' time lost waiting for the busiest: sets work in parallel on each
// (window, layer) and meet at its end, so with time proportional to load each such phase lasts
// max_s L_s where mean_s L_s would do: lost = 1 - sum(mean_s) / sum(max_s) over the phases.
// `phases` is [phases x sets] loads, phase-major. 0 with one set; NaN without load.
double wait_share(const std::vector<int64_t>& phases, int64_t sets);

struct PairCount {
  int64_t layer = 0, a = 0, b = 0, count = 0;  // a < b
};
// The n most frequent pairs (a < b) of symmetric [layers x E x E] co-activation counts, by count,
// ties in (layer, a, b) order; pairs never chosen together are left out.
std::vector<PairCount> top_pairs(const std::vector<int64_t>& coactivation, int64_t layers, int64_t experts,
                                 int64_t n);

}  // namespace moetron
