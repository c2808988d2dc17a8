// What every sampler does with a row of logits holding a NaN or +Inf (a broken checkpoint, an
// overflow): no token can honestly be chosen there, so instead of a token it gives
// kNonFiniteToken, and the engine ends the run naming the request and step (Engine::sample).
// -Inf is a masked token, not an error. One definition for the host and the kernels, so that
// the check costs the device nothing but a comparison per logit it already reads.
#pragma once
#include <cmath>
#include <cstdint>

#include "moetron/core/host_device.hpp"

namespace moetron {

constexpr int32_t kNonFiniteToken = -1;

// True for NaN and +Inf (every comparison with NaN is false).
MOETRON_HOST_DEVICE inline bool breaks_sampling(float logit) { return !(logit < INFINITY); }

}  // namespace moetron
