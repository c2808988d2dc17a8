// When the GPU worked, as CUPTI's activity API records it (GPU timestamps of every kernel,
// memcpy and memset), and a StepObserver that turns that into idle time within engine steps:
// `moetron run --measure-gpu-idle`. Part of the CUDA backend; no CUPTI types in this header.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/backend/idle_math.hpp"
#include "moetron/core/step_observer.hpp"

namespace moetron {

// Collects GPU activity from construction to destruction. CUPTI's buffer callbacks are global,
// so a process holds at most one at a time. Enable it before CUDA graphs are instantiated so
// that the kernels they replay are traced too.
class GpuActivity {
 public:
  GpuActivity();
  ~GpuActivity();
  GpuActivity(const GpuActivity&) = delete;
  GpuActivity& operator=(const GpuActivity&) = delete;

  // Now, on the clock of the activity records (cuptiGetTimestamp), in nanoseconds.
  static uint64_t now_ns();
  // Flushes CUPTI's buffers and hands over what was recorded since the last call. Work still
  // running on the GPU may be missing: call it once that work has finished.
  std::vector<GpuInterval> collect();
  // What GpuInterval::name indexes: kernel names without namespaces or arguments, "[memcpy]",
  // "[memset]".
  std::vector<std::string> names() const;
  // Records CUPTI gave without timestamps (left out of collect()'s intervals).
  int64_t untimed_records() const;
};

// Takes each step's window on the activity clock, then attributes the GPU work to steps.
class GpuIdleObserver final : public StepObserver {
 public:
  void step_begin(bool decode_only) override;
  void step_end() override;
  // The decode steps so far (call after the run; warns about steps it could not measure).
  DecodeIdleSummary summarize();
  // The log lines of where the decode steps' idle time falls (the `top` largest gaps by the
  // work on either side; format_idle_gaps). Call after the run.
  std::vector<std::string> gap_lines(size_t top);

 private:
  GpuActivity activity_;
  std::vector<StepWindow> steps_;
  std::vector<GpuInterval> recorded_;
};

}  // namespace moetron
