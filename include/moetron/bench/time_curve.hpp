// Interpolating measured times between the sizes that were measured, for the profile-backed cost
// model. An isolated peak (a median over twice what both neighbours allow: the next size's
// time, and the previous size's scaled linearly to it; for the first size, the next's) is a
// disturbed measurement and takes the larger of the two: through the rule below it would raise
// every larger size's time (a first GEMM of one profile read 51 us at one row, 6 us from two rows
// on). Then times are made non-decreasing in size (a running maximum over the medians: more
// work is never faster, and noise must not make it look so), then
//   - at a measured size: the (monotone) median, exactly;
//   - between two measured sizes: linear in log(size) - log(time);
//   - past the largest: the largest size's rate (time grows linearly), never faster;
//   - below the smallest: the smallest size's time (a kernel has a floor).
// On the usual shapes (flat while latency-bound, then linear) log t is convex in log x, so the
// chord lies on or above the curve: between measured points the estimate does not under-estimate
// the time; the grid's spacing bounds how much it over-estimates (docs/profile-schema.md).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moetron {

class TimeCurve {
 public:
  TimeCurve() = default;
  // sizes ascending and positive, times positive; Error otherwise.
  TimeCurve(const std::vector<int64_t>& sizes, const std::vector<double>& times);
  double at(double size) const;
  bool empty() const { return x_.empty(); }
  // Whether `size` is measured or lies above a measured size (not read below the smallest).
  bool covers(double size) const { return !x_.empty() && size >= x_.front(); }
  // How at(size) reads the points, for explanations: "name 64 measured", "name 48 interpolated
  // 32..64", "name 512 extrapolated past 256 (linear)" or "name 2 below 4 (its time)".
  std::string reading(double size, const char* name) const;

 private:
  std::vector<double> x_, t_;
};

// Curves over a second size (experts, context): at(x, y) interpolates each neighbouring curve
// at x, then the same way over y (log-log between, linear past the largest, the smallest's time
// below), and never falls as y grows. A curve not measured down to x answers a guess there (its
// smallest size's time), which the times measured at x on curves of larger y cap: a guess must
// not raise measured times through the rule that y never falls (a slow first point of one
// expert's curve would raise every expert count's time at small rows).
class TimeSurface {
 public:
  void add(int64_t y, TimeCurve curve);  // one curve per y
  double at(double x, double y) const;
  bool empty() const { return curves_.empty(); }
  // How at(x, y) reads the points: y over the curves, and x on the curve nearest y below it.
  std::string reading(double x, double y, const char* x_name, const char* y_name) const;

 private:
  std::vector<double> times_at(double x) const;
  std::map<int64_t, TimeCurve> curves_;
};

}  // namespace moetron
