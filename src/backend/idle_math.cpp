#include "moetron/backend/idle_math.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "moetron/analysis/percentiles.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace {

// Busy time and idle fractions of one step's intervals (sorted by start, clipped to the window).
StepIdle measure_one(const StepWindow& w, const std::vector<GpuInterval>& sorted) {
  StepIdle r;
  if (sorted.empty()) {
    r.step_idle = 1;
    return r;
  }
  uint64_t run_start = sorted.front().start, run_end = sorted.front().end, last_end = 0;
  for (const GpuInterval& a : sorted) {
    r.kernels += a.kernel ? 1 : 0;
    last_end = std::max(last_end, a.end);
    if (a.start > run_end) {  // a gap: close the merged run
      r.busy_ns += run_end - run_start;
      run_start = a.start;
    }
    run_end = std::max(run_end, a.end);
  }
  r.busy_ns += run_end - run_start;
  const uint64_t span = last_end - sorted.front().start;
  const uint64_t window = w.end - w.begin;
  r.within_idle = span > 0 ? static_cast<double>(span - r.busy_ns) / static_cast<double>(span) : 0;
  r.step_idle = window > 0 ? static_cast<double>(window - r.busy_ns) / static_cast<double>(window) : 0;
  return r;
}

}  // namespace

std::vector<StepIdle> measure_step_idle(const std::vector<StepWindow>& steps,
                                        std::vector<GpuInterval> activity) {
  for (size_t i = 0; i < steps.size(); ++i) {
    MOETRON_ASSERT(steps[i].begin <= steps[i].end);
    MOETRON_ASSERT(i == 0 || steps[i - 1].end <= steps[i].begin);
  }
  std::sort(activity.begin(), activity.end(),
            [](const GpuInterval& a, const GpuInterval& b) { return a.start < b.start; });
  std::vector<std::vector<GpuInterval>> per_step(steps.size());
  for (GpuInterval a : activity) {
    // The last step that began at or before this start; it holds the start if it has not ended.
    auto it = std::upper_bound(steps.begin(), steps.end(), a.start,
                               [](uint64_t t, const StepWindow& w) { return t < w.begin; });
    if (it == steps.begin()) continue;
    const StepWindow& w = *(it - 1);
    if (a.start > w.end) continue;
    a.end = std::max(a.start, std::min(a.end, w.end));
    per_step[static_cast<size_t>(it - 1 - steps.begin())].push_back(a);
  }
  std::vector<StepIdle> out;
  out.reserve(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) out.push_back(measure_one(steps[i], per_step[i]));
  return out;
}

DecodeIdleSummary summarize_decode_idle(const std::vector<StepWindow>& steps,
                                        const std::vector<StepIdle>& idle) {
  MOETRON_ASSERT(steps.size() == idle.size());
  DecodeIdleSummary s;
  std::vector<double> within, whole, kernels;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!steps[i].decode_only) continue;
    if (idle[i].busy_ns == 0) {
      ++s.decode_steps_without_activity;
      continue;
    }
    within.push_back(idle[i].within_idle);
    whole.push_back(idle[i].step_idle);
    kernels.push_back(static_cast<double>(idle[i].kernels));
  }
  s.decode_steps = static_cast<int64_t>(within.size());
  if (within.empty()) return s;
  s.within_median = percentile(within, 50);
  s.within_p90 = percentile(within, 90);
  s.step_median = percentile(whole, 50);
  s.step_p90 = percentile(whole, 90);
  s.kernels_median = static_cast<int64_t>(std::llround(percentile(kernels, 50)));
  return s;
}

std::string format_decode_idle(const DecodeIdleSummary& s) {
  if (s.decode_steps == 0) return "GPU idle within decode steps: no decode step was measured";
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "GPU idle within decode steps: median %.1f%% (p90 %.1f%%); whole step incl. host: "
                "median %.1f%%; %lld kernels/step",
                s.within_median * 100, s.within_p90 * 100, s.step_median * 100,
                static_cast<long long>(s.kernels_median));
  return buf;
}

std::map<std::string, std::string> decode_idle_attributes(const DecodeIdleSummary& s) {
  if (s.decode_steps == 0) return {};
  const auto percent = [](double fraction) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", fraction * 100);
    return std::string(buf);
  };
  return {{"gpu_idle_within_decode_step_median", percent(s.within_median)},
          {"gpu_idle_within_decode_step_p90", percent(s.within_p90)},
          {"gpu_idle_decode_step_median", percent(s.step_median)},
          {"gpu_idle_decode_step_p90", percent(s.step_p90)},
          {"kernels_per_decode_step", std::to_string(s.kernels_median)}};
}

}  // namespace moetron
