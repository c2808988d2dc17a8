// Setting up one rank's devices for a run: the backend, the GPU binding (device_binding.hpp)
// from what CUDA reports, the memory a rank may plan with, its Ops, and the transports of the
// groups that carry device tensors.
//
// Built into the moetron_device library, which is compiled with the CUDA backend when there is
// one (MOETRON_HAVE_CUDA); everything else of the engine is in moetron_lib and needs no CUDA.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/engine/device_binding.hpp"
#include "moetron/parallel/groups.hpp"

namespace moetron {

// "auto" becomes cuda where a GPU is visible, else cpu; an impossible request is an Error
// naming --backend.
std::string resolve_backend(const std::string& requested);

// This rank's binding (collective over `world`): every rank's visible GPUs (cuda backend; the
// test hook MOETRON_TEST_GPU_UUIDS stands in for CUDA when set) are gathered and bound by
// bind_devices; rank 0 logs one line per node. `all`, when given, receives every rank's record.
DeviceBinding bind_rank_devices(MPI_Comm world, const std::string& backend,
                                std::vector<RankDevices>* all = nullptr);

// What one rank's weights, KV cache and activations may take, for refusing plans that cannot
// fit before anything is loaded: `requested` (--memory-per-rank) when > 0, else the bound GPU's
// free memory over the ranks sharing that GPU, else the host's memory over the node's ranks.
// Test hook MOETRON_TEST_MEMORY_PER_RANK (';'-separated bytes per world rank) replaces the
// measurement. `source`, when given, receives which of these it is, for messages.
int64_t memory_per_rank(int64_t requested, const std::string& backend, const DeviceBinding& binding,
                        std::string* source = nullptr);

// The backend's Ops, on the bound GPU for cuda. For cpu it first sets the process's threads to
// cpu_threads_of_rank's.
std::unique_ptr<Ops> make_ops(const std::string& backend, const DeviceBinding& binding, size_t arena_bytes);

// The threads a CPU rank computes with: MOETRON_CPU_THREADS when set (a positive integer, else an
// Error naming it), else its share of the node's cores (cpu_threads_for_rank).
int cpu_threads_of_rank(const DeviceBinding& binding);

// How many ranks take turns on this rank's compute device (Cluster::ranks_per_device): the ranks
// bound to its GPU; on the CPU, the node's ranks times each one's threads over the node's cores,
// at least 1 (4 single-threaded ranks on 2 cores: 2).
double ranks_per_device(const std::string& backend, const DeviceBinding& binding);

// Ops::kernel_settings of the backend's ops as the environment sets them, without making them.
std::string kernel_settings_by_env(const std::string& backend);

// What a hardware profile records about the device a rank computes on.
struct DeviceIdentity {
  std::string name;    // "NVIDIA H200", or the CPU's model name
  std::string driver;  // "CUDA driver 12.8, runtime 13.0", or "cpu"
};
DeviceIdentity identify_device(const std::string& backend, const DeviceBinding& binding);

// `group` with the binding's device transport when `ops` computes on a GPU (NCCL, or MPI
// through host buffers where ranks share GPUs); `group` itself for CPU Ops.
std::shared_ptr<Communicator> device_transport(std::shared_ptr<MpiCommunicator> group, Ops& ops,
                                               const DeviceBinding& binding);

// Groups that carry device tensors (tp, stage, pipeline) get the binding's device transport:
// NCCL, or MPI through host buffers where ranks share GPUs. The world and replica groups carry
// only host data and stay on MPI. Nothing changes for CPU Ops.
void use_device_transport(ParallelGroups& g, Ops& ops, const DeviceBinding& binding);

}  // namespace moetron
