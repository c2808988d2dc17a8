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
};
DecodeIdleSummary summarize_decode_idle(const std::vector<StepWindow>& steps,
                                        const std::vector<StepIdle>& idle);

// "GPU idle within decode steps: median X% (p90 Y%); whole step incl. host: median Z%;
// N kernels/step" — perf/bench.py parses this line: keep it as it is. Without a measured
// decode step it says so instead (and bench finds no numbers rather than zeros).
std::string format_decode_idle(const DecodeIdleSummary& s);

// The results file's root attributes for `s`: gpu_idle_within_decode_step_{median,p90},
// gpu_idle_decode_step_{median,p90} in percent, and kernels_per_decode_step (the median), as
// text. Empty without a measured decode step.
std::map<std::string, std::string> decode_idle_attributes(const DecodeIdleSummary& s);

}  // namespace moetron
