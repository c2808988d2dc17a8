// StepObserver: a hook the engine calls around every step. It lives below the engine and the
// backends so that a backend's tool (the GPU idle observer, backend/gpu_activity.hpp) can
// implement it without including the engine.
#pragma once

namespace moetron {

class StepObserver {
 public:
  virtual ~StepObserver() = default;
  virtual void step_begin(bool decode_only) = 0;
  virtual void step_end() = 0;
};

}  // namespace moetron
