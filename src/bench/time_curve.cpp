#include "moetron/bench/time_curve.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "moetron/core/error.hpp"

namespace moetron {

namespace {

// The rule of time_curve.hpp over points x (ascending) and t (non-decreasing).
double interpolate(const std::vector<double>& x, const std::vector<double>& t, double q) {
  if (q <= x.front()) return t.front();
  if (q >= x.back()) return t.back() * q / x.back();
  const size_t hi = static_cast<size_t>(std::upper_bound(x.begin(), x.end(), q) - x.begin());
  const size_t lo = hi - 1;
  const double w = std::log(q / x[lo]) / std::log(x[hi] / x[lo]);
  // Clamped to the segment's ends, so rounding in exp(log) cannot break monotonicity.
  return std::clamp(std::exp(std::log(t[lo]) + w * std::log(t[hi] / t[lo])), t[lo], t[hi]);
}

std::string size_text(double size) {
  std::ostringstream os;
  os << std::llround(size);
  return os.str();
}

// Which rule of interpolate() answers q over points x.
std::string position(const std::vector<double>& x, double q, const char* name) {
  const std::string at = std::string(name) + " " + size_text(q);
  if (q < x.front()) return at + " below " + size_text(x.front()) + " (its time)";
  if (q > x.back()) return at + " extrapolated past " + size_text(x.back()) + " (linear)";
  const size_t hi = static_cast<size_t>(std::lower_bound(x.begin(), x.end(), q) - x.begin());
  if (x[hi] == q) return at + " measured";
  return at + " interpolated " + size_text(x[hi - 1]) + ".." + size_text(x[hi]);
}

}  // namespace

TimeCurve::TimeCurve(const std::vector<int64_t>& sizes, const std::vector<double>& times) {
  MOETRON_CHECK(!sizes.empty() && sizes.size() == times.size(), "TimeCurve: " << sizes.size() << " sizes for "
                                                                              << times.size() << " times");
  for (size_t i = 0; i < sizes.size(); ++i) {
    MOETRON_CHECK(sizes[i] > 0 && (i == 0 || sizes[i] > sizes[i - 1]), "TimeCurve: sizes must be positive and ascend");
    MOETRON_CHECK(times[i] > 0, "TimeCurve: times must be positive");
    x_.push_back(static_cast<double>(sizes[i]));
    t_.push_back(i == 0 ? times[i] : std::max(times[i], t_.back()));
  }
}

double TimeCurve::at(double size) const {
  MOETRON_CHECK(!x_.empty(), "TimeCurve: no measurements");
  return interpolate(x_, t_, size);
}

std::string TimeCurve::reading(double size, const char* name) const {
  MOETRON_CHECK(!x_.empty(), "TimeCurve: no measurements");
  return position(x_, size, name);
}

void TimeSurface::add(int64_t y, TimeCurve curve) {
  MOETRON_CHECK(y > 0 && !curve.empty(), "TimeSurface: a curve must be measured at a positive size");
  curves_[y] = std::move(curve);
}

double TimeSurface::at(double x, double y) const {
  MOETRON_CHECK(!curves_.empty(), "TimeSurface: no measurements");
  std::vector<double> ys, ts;
  for (const auto& [size, curve] : curves_) {
    ys.push_back(static_cast<double>(size));
    ts.push_back(ts.empty() ? curve.at(x) : std::max(curve.at(x), ts.back()));
  }
  return interpolate(ys, ts, y);
}

std::string TimeSurface::reading(double x, double y, const char* x_name, const char* y_name) const {
  MOETRON_CHECK(!curves_.empty(), "TimeSurface: no measurements");
  std::vector<double> ys;
  for (const auto& entry : curves_) ys.push_back(static_cast<double>(entry.first));
  auto nearest = curves_.upper_bound(static_cast<int64_t>(std::floor(y)));
  if (nearest != curves_.begin()) --nearest;
  return nearest->second.reading(x, x_name) + ", " + position(ys, y, y_name);
}

}  // namespace moetron
