// The CUDA profiler's capture window around chosen decode steps: `moetron run
// --profile-decode-steps FIRST:COUNT` under `ncu --profile-from-start off` profiles only the
// kernels of decode steps [FIRST, FIRST + COUNT) (counted from 0), so that start-up, weight
// generation and prefill are skipped by marker rather than by counting launches. Part of the
// CUDA backend; no CUDA types in this header.
#pragma once
#include <cstdint>
#include <string>

#include "moetron/core/step_observer.hpp"

namespace moetron {

struct DecodeStepRange {
  int64_t first = 0, count = 0;
};
// "FIRST:COUNT" (FIRST >= 0, COUNT >= 1); a clear error naming `option` otherwise.
DecodeStepRange parse_decode_step_range(const std::string& text, const char* option);

class ProfilerWindow final : public StepObserver {
 public:
  explicit ProfilerWindow(DecodeStepRange range) : range_(range) {}
  ~ProfilerWindow() override;
  void step_begin(bool decode_only) override;
  void step_end() override;

 private:
  DecodeStepRange range_;
  int64_t decode_steps_ = 0;  // decode steps begun so far
  bool in_decode_ = false, open_ = false;
};

}  // namespace moetron
