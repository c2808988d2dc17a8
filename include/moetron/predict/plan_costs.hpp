// PlanCosts: the two cost models one ranking is priced with, made once from the hardware figures
// (a preset, --hardware-set, --interconnect) and an optional `moetron bench` profile:
//   estimate  the profile's measurements, the roofline figures for what it lacks (without a
//             profile: the roofline alone). What the ranking, the errors of perf/PREDICTOR.md and
//             every logged figure use: centred on what the engine measures, not a bound.
//   ceiling   the roofline at ceiling_figures: the rates of the profile's fastest kernels (the
//             figures' without a profile), no kernel gaps. Every answer is a floor of what the
//             engine's kernels did on that machine, so a plan priced by it (PlanPrediction::ceiling)
//             is a bound no run beats.
#pragma once
#include <memory>

#include "moetron/bench/profile.hpp"
#include "moetron/predict/profile_cost_model.hpp"
#include "moetron/predict/roofline_cost_model.hpp"

namespace moetron {

// `figures` with no kernel gaps (a recorded step's PDL launches leave the GPU idle well under 1%
// between kernels: perf/NOTES.md), and, with a profile, the machine's own rates: the FLOP and byte
// rates of its fastest kernels (each point of the gemm, expert, attention, memory-bound and
// hbm_copy tables counted as the roofline counts that kernel, over its fast-tail p10 time), so
// that no measured point is priced above its measurement; where the figures give the device's
// cache size, kernels moving more than it set the memory rate and the fastest of all the cache
// rate (a kernel's bytes up to the cache's size at it); each link's bus bandwidth raised to its
// all-reduce and all-to-all points' (nccl-tests' busbw) and its latency lowered to its fastest
// all-reduce over the hops the roofline counts. The memory figures stay.
HardwareFigures ceiling_figures(HardwareFigures figures, const HardwareProfile* profile);

class PlanCosts {
 public:
  // `profile` (may be null) must outlive this object.
  PlanCosts(const HardwareFigures& figures, const HardwareProfile* profile);
  PlanCosts(const PlanCosts&) = delete;  // the profile model refers to the roofline member
  PlanCosts& operator=(const PlanCosts&) = delete;

  const CostModel& estimate() const;
  const RooflineCostModel& ceiling() const { return ceiling_; }
  const RooflineCostModel& roofline() const { return roofline_; }
  const ProfileCostModel* measured() const { return measured_.get(); }  // nullptr without a profile

 private:
  RooflineCostModel roofline_;
  std::unique_ptr<ProfileCostModel> measured_;
  RooflineCostModel ceiling_;
};

}  // namespace moetron
