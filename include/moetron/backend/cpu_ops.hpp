// CpuOps: the float32 reference backend. Weights are converted to F32 at upload; every op is
// plain, readable C++ that the CUDA kernels are tested against.
#pragma once
#include <cstddef>
#include <memory>

#include "moetron/backend/ops.hpp"

namespace moetron {

std::unique_ptr<Ops> make_cpu_ops();

// The most bytes of temporaries (Ops::temp) that were alive at once on `ops`, a CPU backend from
// make_cpu_ops, since it was made: each temporary counted as CudaOps::temp counts it in its step
// arena (temp_arena_bytes, backend/ops.hpp), so a run on the CPU measures what the CUDA
// arena (step_arena_bytes, parallel/memory_need.hpp) must hold of the forward's own temporaries
// at the CPU's width (float32). Temporaries the CUDA backend makes inside its ops (moe_experts'
// permuted rows, swiglu's gate/up) are not made on the CPU, so they are not counted.
size_t cpu_peak_temp_bytes(const Ops& ops);

}  // namespace moetron
