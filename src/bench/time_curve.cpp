#include "moetron/bench/time_curve.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "moetron/core/error.hpp"

namespace moetron {

namespace {

// A median this many times what both neighbours allow is a disturbed measurement (time_curve.hpp).
constexpr double kIsolatedPeak = 2.0;

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
  }
  t_ = times;
  for (size_t i = 0; i + 1 < t_.size(); ++i) {
    // What the neighbours allow: the next size's time, and the previous size's scaled linearly.
    const double allowed = i == 0 ? times[1] : std::max(times[i + 1], times[i - 1] * x_[i] / x_[i - 1]);
    if (times[i] > kIsolatedPeak * allowed) t_[i] = allowed;
  }
  for (size_t i = 1; i < t_.size(); ++i) t_[i] = std::max(t_[i], t_[i - 1]);
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

// Each curve's time at x, in y's order; where a curve was not measured down to x its time is a
// guess (its smallest size's), capped by the measured times of larger y.
std::vector<double> TimeSurface::times_at(double x) const {
  std::vector<double> ts;
  std::vector<bool> guessed;
  for (const auto& entry : curves_) {
    ts.push_back(entry.second.at(x));
    guessed.push_back(!entry.second.covers(x));
  }
  double measured_above = std::numeric_limits<double>::infinity();
  for (size_t i = ts.size(); i-- > 0;) {
    if (guessed[i])
      ts[i] = std::min(ts[i], measured_above);
    else
      measured_above = std::min(measured_above, ts[i]);
  }
  for (size_t i = 1; i < ts.size(); ++i) ts[i] = std::max(ts[i], ts[i - 1]);  // y never faster
  return ts;
}

double TimeSurface::at(double x, double y) const {
  MOETRON_CHECK(!curves_.empty(), "TimeSurface: no measurements");
  std::vector<double> ys;
  for (const auto& entry : curves_) ys.push_back(static_cast<double>(entry.first));
  return interpolate(ys, times_at(x), y);
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
