#include "moetron/analysis/percentiles.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "moetron/core/error.hpp"

namespace moetron {

std::vector<double> percentiles(std::vector<double> samples, const std::vector<double>& qs) {
  for (double x : samples) MOETRON_CHECK(!std::isnan(x), "percentile of a NaN sample");
  std::sort(samples.begin(), samples.end());
  std::vector<double> out;
  for (double q : qs) {
    MOETRON_CHECK(q >= 0 && q <= 100, "percentile " << q << " is outside [0, 100]");
    if (samples.empty()) {
      out.push_back(std::numeric_limits<double>::quiet_NaN());
      continue;
    }
    const double h = static_cast<double>(samples.size() - 1) * q / 100.0;
    const size_t below = static_cast<size_t>(std::floor(h));
    const size_t above = std::min(below + 1, samples.size() - 1);
    out.push_back(samples[below] + (h - static_cast<double>(below)) * (samples[above] - samples[below]));
  }
  return out;
}

double percentile(std::vector<double> samples, double q) { return percentiles(std::move(samples), {q}).front(); }

}  // namespace moetron
