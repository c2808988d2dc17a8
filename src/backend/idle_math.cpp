#include "moetron/backend/idle_math.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

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
  uint64_t kernel_gaps = 0, first_kernel_start = 0;  // gaps once the first kernel has started
  bool kernel_started = false;
  for (const GpuInterval& a : sorted) {
    r.kernels += a.kernel ? 1 : 0;
    last_end = std::max(last_end, a.end);
    if (a.start > run_end) {  // a gap: close the merged run
      r.busy_ns += run_end - run_start;
      if (kernel_started) {
        kernel_gaps += a.start - run_end;
      } else if (a.kernel) {
        r.launch_gap_ns = a.start - run_end;  // the wait for the first kernel
      }
      run_start = a.start;
    }
    if (a.kernel && !kernel_started) {
      kernel_started = true;
      first_kernel_start = a.start;
    }
    run_end = std::max(run_end, a.end);
  }
  r.busy_ns += run_end - run_start;
  if (kernel_started && last_end > first_kernel_start)
    r.kernel_span_idle = static_cast<double>(kernel_gaps) / static_cast<double>(last_end - first_kernel_start);
  const uint64_t span = last_end - sorted.front().start;
  const uint64_t window = w.end - w.begin;
  r.within_idle = span > 0 ? static_cast<double>(span - r.busy_ns) / static_cast<double>(span) : 0;
  r.step_idle = window > 0 ? static_cast<double>(window - r.busy_ns) / static_cast<double>(window) : 0;
  return r;
}

// Each step's intervals in start order: an interval goes to the step whose window holds its
// start and is clipped to that step's end; intervals in no window are dropped.
std::vector<std::vector<GpuInterval>> split_by_step(const std::vector<StepWindow>& steps,
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
  return per_step;
}

}  // namespace

// A kernel's name as a log line shows it: demangled, without return type, namespaces,
// template arguments or parameters ("void moetron::kernels::(anonymous namespace)::
// rmsnorm_kernel<256>(...)" -> "rmsnorm_kernel").
std::string short_kernel_name(const std::string& mangled) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  std::string name = status == 0 && demangled != nullptr ? demangled : mangled;
  std::free(demangled);
  const std::string anonymous = "(anonymous namespace)";
  for (size_t at = name.find(anonymous); at != std::string::npos; at = name.find(anonymous))
    name.replace(at, anonymous.size(), "anonymous");
  const size_t cut = std::min(name.find('<'), name.find('('));
  if (cut != std::string::npos) name.resize(cut);
  const size_t colons = name.rfind("::");
  if (colons != std::string::npos) name.erase(0, colons + 2);
  const size_t space = name.rfind(' ');
  if (space != std::string::npos) name.erase(0, space + 1);
  return name.empty() ? "?" : name;
}

std::vector<StepIdle> measure_step_idle(const std::vector<StepWindow>& steps,
                                        std::vector<GpuInterval> activity) {
  const std::vector<std::vector<GpuInterval>> per_step = split_by_step(steps, std::move(activity));
  std::vector<StepIdle> out;
  out.reserve(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) out.push_back(measure_one(steps[i], per_step[i]));
  return out;
}

DecodeGapSummary decode_idle_gaps(const std::vector<StepWindow>& steps,
                                  std::vector<GpuInterval> activity) {
  const std::vector<std::vector<GpuInterval>> per_step = split_by_step(steps, std::move(activity));
  DecodeGapSummary s;
  std::map<std::pair<int32_t, int32_t>, IdleGap> by_pair;
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::vector<GpuInterval>& work = per_step[i];
    if (!steps[i].decode_only || work.empty()) continue;
    ++s.decode_steps;
    uint64_t run_end = work.front().end;
    int32_t run_end_name = work.front().name;  // the piece whose end is run_end
    for (size_t j = 1; j < work.size(); ++j) {
      const GpuInterval& a = work[j];
      if (a.kernel) {
        ++s.later_starts;
        s.overlapped_starts += a.start < run_end;
      }
      if (a.start > run_end) {
        IdleGap& g = by_pair[{run_end_name, a.name}];
        g.before = run_end_name;
        g.after = a.name;
        g.total_ns += a.start - run_end;
        ++g.count;
      }
      if (a.end >= run_end) {  // this piece now ends the run (a gap's far side always does)
        run_end = a.end;
        run_end_name = a.name;
      }
    }
  }
  for (const auto& [pair, gap] : by_pair) s.gaps.push_back(gap);
  std::sort(s.gaps.begin(), s.gaps.end(),
            [](const IdleGap& a, const IdleGap& b) { return a.total_ns > b.total_ns; });
  return s;
}

std::vector<std::string> format_idle_gaps(const DecodeGapSummary& s,
                                          const std::vector<std::string>& names, size_t top) {
  if (s.decode_steps == 0) return {};
  const auto name = [&](int32_t i) {
    return i >= 0 && static_cast<size_t>(i) < names.size() ? names[static_cast<size_t>(i)] : std::string("?");
  };
  const double steps = static_cast<double>(s.decode_steps);
  uint64_t total = 0;
  int64_t count = 0;
  for (const IdleGap& g : s.gaps) total += g.total_ns, count += g.count;
  std::vector<std::string> lines;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "GPU idle gaps within decode steps: %.1f us a step in %.1f gaps; %lld of %lld kernel "
                "starts overlapped earlier work (launched early)",
                static_cast<double>(total) / steps / 1e3, static_cast<double>(count) / steps,
                static_cast<long long>(s.overlapped_starts), static_cast<long long>(s.later_starts));
  lines.emplace_back(buf);
  for (size_t i = 0; i < s.gaps.size() && i < top; ++i) {
    const IdleGap& g = s.gaps[i];
    std::snprintf(buf, sizeof buf, "  %7.2f us a step (%5.1f gaps of %6.2f us) after %s, before %s",
                  static_cast<double>(g.total_ns) / steps / 1e3, static_cast<double>(g.count) / steps,
                  static_cast<double>(g.total_ns) / static_cast<double>(g.count) / 1e3,
                  name(g.before).c_str(), name(g.after).c_str());
    lines.emplace_back(buf);
  }
  return lines;
}

DecodeIdleSummary summarize_decode_idle(const std::vector<StepWindow>& steps,
                                        const std::vector<StepIdle>& idle) {
  MOETRON_ASSERT(steps.size() == idle.size());
  DecodeIdleSummary s;
  std::vector<double> within, whole, kernels, span, launch, busy;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!steps[i].decode_only) continue;
    if (idle[i].busy_ns == 0) {
      ++s.decode_steps_without_activity;
      continue;
    }
    within.push_back(idle[i].within_idle);
    whole.push_back(idle[i].step_idle);
    kernels.push_back(static_cast<double>(idle[i].kernels));
    span.push_back(idle[i].kernel_span_idle);
    launch.push_back(static_cast<double>(idle[i].launch_gap_ns) / 1e3);
    busy.push_back(static_cast<double>(idle[i].busy_ns) / 1e3);
  }
  s.decode_steps = static_cast<int64_t>(within.size());
  if (within.empty()) return s;
  s.within_median = percentile(within, 50);
  s.within_p90 = percentile(within, 90);
  s.step_median = percentile(whole, 50);
  s.step_p90 = percentile(whole, 90);
  s.kernels_median = static_cast<int64_t>(std::llround(percentile(kernels, 50)));
  s.kernel_span_median = percentile(span, 50);
  s.kernel_span_p90 = percentile(span, 90);
  s.launch_gap_median_us = percentile(launch, 50);
  s.busy_median_us = percentile(busy, 50);
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

std::string format_kernel_idle(const DecodeIdleSummary& s) {
  if (s.decode_steps == 0) return "";
  char buf[240];
  std::snprintf(buf, sizeof buf,
                "GPU idle between the kernels of decode steps: median %.1f%% (p90 %.1f%%); launch gap "
                "before the first kernel: median %.1f us; busy %.1f us a step",
                s.kernel_span_median * 100, s.kernel_span_p90 * 100, s.launch_gap_median_us, s.busy_median_us);
  return buf;
}

std::map<std::string, std::string> decode_idle_attributes(const DecodeIdleSummary& s) {
  if (s.decode_steps == 0) return {};
  const auto decimal = [](double value) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", value);
    return std::string(buf);
  };
  const auto percent = [&](double fraction) { return decimal(fraction * 100); };
  return {{"gpu_idle_within_decode_step_median", percent(s.within_median)},
          {"gpu_idle_within_decode_step_p90", percent(s.within_p90)},
          {"gpu_idle_decode_step_median", percent(s.step_median)},
          {"gpu_idle_decode_step_p90", percent(s.step_p90)},
          {"kernels_per_decode_step", std::to_string(s.kernels_median)},
          {"gpu_idle_between_kernels_median", percent(s.kernel_span_median)},
          {"gpu_idle_between_kernels_p90", percent(s.kernel_span_p90)},
          {"gpu_launch_gap_median_us", decimal(s.launch_gap_median_us)},
          {"gpu_busy_decode_step_median_us", decimal(s.busy_median_us)}};
}

}  // namespace moetron
