#include "moetron/analysis/load_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "moetron/core/error.hpp"

namespace moetron {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double total_of(const std::vector<int64_t>& loads) {
  return static_cast<double>(std::accumulate(loads.begin(), loads.end(), int64_t{0}));
}

std::vector<int64_t> ranked(const std::vector<int64_t>& loads, int64_t n, bool largest) {
  std::vector<int64_t> order(loads.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return largest ? loads[static_cast<size_t>(a)] > loads[static_cast<size_t>(b)]
                   : loads[static_cast<size_t>(a)] < loads[static_cast<size_t>(b)];
  });
  order.resize(std::min<size_t>(order.size(), static_cast<size_t>(std::max<int64_t>(n, 0))));
  return order;
}

}  // namespace

double gini_coefficient(const std::vector<int64_t>& loads) {
  const double total = total_of(loads), n = static_cast<double>(loads.size());
  if (total <= 0) return kNaN;
  // Sorted ascending: G = 2 sum_i i x_(i) / (n sum x) - (n + 1) / n, i from 1.
  std::vector<int64_t> sorted = loads;
  std::sort(sorted.begin(), sorted.end());
  double weighted = 0;
  for (size_t i = 0; i < sorted.size(); ++i) weighted += static_cast<double>(i + 1) * static_cast<double>(sorted[i]);
  return 2 * weighted / (n * total) - (n + 1) / n;
}

double zipf_exponent(const std::vector<int64_t>& loads) {
  std::vector<int64_t> sorted = loads;
  std::sort(sorted.begin(), sorted.end(), std::greater<int64_t>());
  std::vector<double> x, y;
  for (size_t r = 0; r < sorted.size() && sorted[r] > 0; ++r) {
    x.push_back(std::log(static_cast<double>(r + 1)));
    y.push_back(std::log(static_cast<double>(sorted[r])));
  }
  if (x.size() < 2) return kNaN;
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  return -sxy / sxx;
}

LoadStats load_stats(const std::vector<int64_t>& loads) {
  const double total = total_of(loads), n = static_cast<double>(loads.size());
  if (total <= 0) return {kNaN, kNaN, kNaN, kNaN, kNaN};
  const double mean = total / n;
  double max = 0, squares = 0, entropy = 0;
  for (int64_t v : loads) {
    const double x = static_cast<double>(v);
    max = std::max(max, x);
    squares += (x - mean) * (x - mean);
    if (v > 0) entropy -= x / total * std::log(x / total);
  }
  LoadStats s;
  s.gini = gini_coefficient(loads);
  s.imbalance = max / mean;
  s.cv = std::sqrt(squares / n) / mean;
  s.entropy = n > 1 ? entropy / std::log(n) : 1.0;
  s.zipf_exponent = zipf_exponent(loads);
  return s;
}

double top_share(const std::vector<int64_t>& loads, int64_t k) {
  const double total = total_of(loads);
  if (total <= 0) return kNaN;
  double top = 0;
  for (int64_t i : ranked(loads, k, true)) top += static_cast<double>(loads[static_cast<size_t>(i)]);
  return top / total;
}

std::vector<int64_t> hottest(const std::vector<int64_t>& loads, int64_t n) { return ranked(loads, n, true); }
std::vector<int64_t> coldest(const std::vector<int64_t>& loads, int64_t n) { return ranked(loads, n, false); }

std::vector<int64_t> set_loads(const std::vector<int64_t>& loads, int64_t sets) {
  MOETRON_CHECK(sets >= 1, "expert sets: " << sets << " sets");
  const int64_t n = static_cast<int64_t>(loads.size());
  std::vector<int64_t> out(static_cast<size_t>(sets), 0);
  // Set s holds entries [n s / sets, n (s + 1) / sets), as parallel/plan splits experts.
  for (int64_t s = 0; s < sets; ++s)
    for (int64_t e = n * s / sets; e < n * (s + 1) / sets; ++e) out[static_cast<size_t>(s)] += loads[static_cast<size_t>(e)];
  return out;
}

std::vector<int64_t> set_loads(const std::vector<int64_t>& loads, int64_t sets,
                               const std::vector<std::vector<int64_t>>& copies) {
  if (copies.empty()) return set_loads(loads, sets);
  MOETRON_CHECK(copies.size() == loads.size(), "expert sets: copies of " << copies.size() << " entries for "
                                                                         << loads.size() << " loads");
  const int64_t n = static_cast<int64_t>(loads.size());
  std::vector<int64_t> moved = loads;  // each entry's load left on its own set
  std::vector<int64_t> out(static_cast<size_t>(sets), 0);
  for (int64_t e = 0; e < n; ++e) {
    const std::vector<int64_t>& extra = copies[static_cast<size_t>(e)];
    const int64_t parts = 1 + static_cast<int64_t>(extra.size()), load = loads[static_cast<size_t>(e)];
    moved[static_cast<size_t>(e)] = load / parts + (load % parts > 0 ? 1 : 0);
    for (int64_t c = 1; c < parts; ++c) {
      const int64_t s = extra[static_cast<size_t>(c - 1)];
      MOETRON_CHECK(s >= 0 && s < sets, "expert sets: a copy on set " << s << " of " << sets);
      out[static_cast<size_t>(s)] += load / parts + (load % parts > c ? 1 : 0);
    }
  }
  const std::vector<int64_t> own = set_loads(moved, sets);
  for (int64_t s = 0; s < sets; ++s) out[static_cast<size_t>(s)] += own[static_cast<size_t>(s)];
  return out;
}

double wait_share(const std::vector<int64_t>& phases, int64_t sets) {
  MOETRON_CHECK(sets >= 1 && phases.size() % static_cast<size_t>(sets) == 0,
                "wait share: " << phases.size() << " loads for " << sets << " sets");
  double busiest = 0, average = 0;
  for (size_t p = 0; p < phases.size(); p += static_cast<size_t>(sets)) {
    const auto first = phases.begin() + static_cast<std::ptrdiff_t>(p), last = first + sets;
    busiest += static_cast<double>(*std::max_element(first, last));
    average += static_cast<double>(std::accumulate(first, last, int64_t{0})) / static_cast<double>(sets);
  }
  return busiest > 0 ? 1 - average / busiest : kNaN;
}

std::vector<PairCount> top_pairs(const std::vector<int64_t>& coactivation, int64_t layers, int64_t experts,
                                 int64_t n) {
  MOETRON_CHECK(coactivation.size() == static_cast<size_t>(layers * experts * experts),
                "co-activation: " << coactivation.size() << " counts for " << layers << " layers x " << experts
                                  << "^2 experts");
  std::vector<PairCount> pairs;
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t a = 0; a < experts; ++a)
      for (int64_t b = a + 1; b < experts; ++b) {
        const int64_t c = coactivation[static_cast<size_t>((l * experts + a) * experts + b)];
        if (c > 0) pairs.push_back({l, a, b, c});
      }
  std::stable_sort(pairs.begin(), pairs.end(), [](const PairCount& x, const PairCount& y) { return x.count > y.count; });
  pairs.resize(std::min<size_t>(pairs.size(), static_cast<size_t>(std::max<int64_t>(n, 0))));
  return pairs;
}

}  // namespace moetron
