// CpuOps: the float32 reference backend. Weights are converted to F32 at upload; every op is
// plain, readable C++ that the CUDA kernels are tested against.
#pragma once
#include <memory>

#include "moetron/backend/ops.hpp"

namespace moetron {

std::unique_ptr<Ops> make_cpu_ops();

}  // namespace moetron
