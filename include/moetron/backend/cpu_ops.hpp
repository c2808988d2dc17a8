// CpuOps: the float32 reference backend. Weights are converted to F32 at upload; every op is
// plain, readable C++ that the CUDA kernels are tested against.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "moetron/backend/ops.hpp"

namespace moetron {

std::unique_ptr<Ops> make_cpu_ops();

// Threads the CPU backend's ops may start, for the whole process (a process is one rank): every
// usable core (the process's affinity: taskset, srun --cpus-per-task, mpirun's binding) unless
// set. Ranks sharing a node share its cores, so the engine gives each its share
// (cpu_threads_for_rank) before computing; MOETRON_CPU_THREADS, when set, replaces that share.
void set_cpu_threads(int threads);  // 0: every usable core again
int cpu_threads();
int cpu_usable_cores();
std::vector<int> cpu_affinity_cores();  // the cores this process may run on, ascending; empty: unknown
int cpu_node_cores();  // every core of the host
// A rank's share: the node's cores over its ranks, never more than the rank may use, at least 1.
int cpu_threads_for_rank(int usable_cores, int node_cores, int ranks_on_node);

// The most bytes of temporaries (Ops::temp) that were alive at once on `ops`, a CPU backend from
// make_cpu_ops, since it was made: each temporary counted as CudaOps::temp counts it in its step
// arena (temp_arena_bytes, backend/ops.hpp), so a run on the CPU measures what the CUDA
// arena (step_arena_bytes, parallel/memory_need.hpp) must hold of the forward's own temporaries
// at the CPU's width (float32). Temporaries the CUDA backend makes inside its ops (moe_experts'
// permuted rows, swiglu's gate/up) are not made on the CPU, so they are not counted.
size_t cpu_peak_temp_bytes(const Ops& ops);

}  // namespace moetron
