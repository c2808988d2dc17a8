// How idle the GPU was within engine steps, from GPU activity intervals (kernels, copies) and
// the host's step windows, all on one clock. Pure arithmetic: the CUPTI collection that feeds
// it lives in backend/gpu_activity.hpp.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moetron {

// One piece of GPU work, [start, end) in nanoseconds.
struct GpuInterval {
  uint64_t start = 0, end = 0;
  bool kernel = true;  // false: a memcpy or memset (busy time, but not counted as a kernel)
  int32_t name = -1;   // what ran, as an index into the collector's name table; -1: not named
};

// One engine step as the host saw it: from its start to its tokens being on the host.
struct StepWindow {
  uint64_t begin = 0, end = 0;
  bool decode_only = false;
};

struct StepIdle {
  int64_t kernels = 0;
  uint64_t busy_ns = 0;     // length of the union of the step's activity intervals
  double within_idle = 0;   // gaps between the step's first start and last end, over that span
  double step_idle = 0;     // (window - busy) / window: host work and waits included
  // From the first kernel's start to the last end: the gaps between kernels (bubbles), over
  // that span. Leaves out what comes before the first kernel: the input copies and the wait for
  // the host's launch (which CUPTI's own tracing lengthens; perf/NOTES.md, seventeenth session).
  double kernel_span_idle = 0;
  uint64_t launch_gap_ns = 0;  // from the end of the work before the first kernel to its start
};

// Attributes each interval to the step whose [begin, end] holds its start (intervals clipped
// to that end; those in no window are dropped) and measures each step. `steps` must be in
// time order and not overlap. A step with no activity has kernels == 0 and within_idle 0.
std::vector<StepIdle> measure_step_idle(const std::vector<StepWindow>& steps,
                                        std::vector<GpuInterval> activity);

// Over the decode-only steps that had GPU activity. Fractions in [0, 1].
struct DecodeIdleSummary {
  int64_t decode_steps = 0;           // measured (with activity)
  int64_t decode_steps_without_activity = 0;
  double within_median = 0, within_p90 = 0;
  double step_median = 0, step_p90 = 0;
  int64_t kernels_median = 0;
  double kernel_span_median = 0, kernel_span_p90 = 0;  // StepIdle::kernel_span_idle
  double launch_gap_median_us = 0;
  double busy_median_us = 0;
};
DecodeIdleSummary summarize_decode_idle(const std::vector<StepWindow>& steps,
                                        const std::vector<StepIdle>& idle);

// A kernel's (mangled) name as the log shows it: demangled, without return type, namespaces,
// template arguments or parameters; a name that does not demangle is cut the same way.
std::string short_kernel_name(const std::string& mangled);

// Where the idle time within decode steps falls: each gap between two busy runs of a step,
// summed by the names of the work on either side of it (the piece whose end closed the run
// before the gap, the piece that opened the run after it), over every decode step with work.
struct IdleGap {
  int32_t before = -1, after = -1;  // GpuInterval::name of either side
  uint64_t total_ns = 0;            // summed over the decode steps
  int64_t count = 0;
};
struct DecodeGapSummary {
  int64_t decode_steps = 0;       // with GPU activity
  int64_t later_starts = 0;       // kernels that started after their step's first piece of work
  int64_t overlapped_starts = 0;  // of those, started while earlier work still ran (early launches)
  std::vector<IdleGap> gaps;      // largest total first
};
DecodeGapSummary decode_idle_gaps(const std::vector<StepWindow>& steps,
                                  std::vector<GpuInterval> activity);

// The log lines of `s`: the share of overlapped starts, then the `top` largest gaps as time per
// decode step, with `names[i]` for name i ("?" for -1 or past the table).
std::vector<std::string> format_idle_gaps(const DecodeGapSummary& s,
                                          const std::vector<std::string>& names, size_t top);

// "GPU idle within decode steps: median X% (p90 Y%); whole step incl. host: median Z%;
// N kernels/step" — perf/bench.py parses this line: keep it as it is. Without a measured
// decode step it says so instead (and bench finds no numbers rather than zeros).
std::string format_decode_idle(const DecodeIdleSummary& s);
// "GPU idle between the kernels of decode steps: median X% (p90 Y%); launch gap before the
// first kernel: median Z us; busy W us a step" (perf/bench.py parses it too). Empty without a
// measured decode step.
std::string format_kernel_idle(const DecodeIdleSummary& s);

// The results file's root attributes for `s`: gpu_idle_within_decode_step_{median,p90},
// gpu_idle_decode_step_{median,p90} in percent, and kernels_per_decode_step (the median), as
// text, and gpu_idle_between_kernels_{median,p90} (percent), gpu_launch_gap_median_us and
// gpu_busy_decode_step_median_us. Empty without a measured decode step.
std::map<std::string, std::string> decode_idle_attributes(const DecodeIdleSummary& s);

}  // namespace moetron
