#include "run_setup.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/comm/staged_communicator.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#ifdef MOETRON_HAVE_CUDA
#include <cuda_runtime.h>

#include "moetron/backend/cuda_ops.hpp"
#include "moetron/comm/nccl_communicator.hpp"
#endif

namespace moetron::apps {

std::string resolve_backend(const std::string& requested) {
#ifdef MOETRON_HAVE_CUDA
  const bool gpu = cuda_device_available();
#else
  const bool gpu = false;
#endif
  if (requested == "auto") return gpu ? "cuda" : "cpu";
  if (requested == "cuda") {
#ifndef MOETRON_HAVE_CUDA
    MOETRON_FAIL("--backend cuda: this build has no CUDA backend (rebuild with nvcc present)");
#endif
    MOETRON_CHECK(gpu, "--backend cuda: no CUDA device is visible to this process");
  }
  return requested;
}

// Ranks on this node, for --plan auto's "tensor parallel within a node" and GPU selection.
int node_local_rank(int* ranks_on_node) {
  MPI_Comm local;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type");
  int rank = 0;
  check_mpi(MPI_Comm_rank(local, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(local, ranks_on_node), "MPI_Comm_size");
  check_mpi(MPI_Comm_free(&local), "MPI_Comm_free");
  return rank;
}

// What one rank's weights may take, for refusing plans that cannot fit before anything is
// loaded: --memory-per-rank, else the GPU's free memory, else the host's memory over the
// node's ranks. Every rank must refuse the same plans, so the smallest value over all ranks
// would be ideal; plans are validated per rank and a refusal on any rank ends the job.
int64_t memory_per_rank(const RunOptions& o, const std::string& backend, int local_rank, int ranks_on_node) {
  if (o.memory_per_rank > 0) return o.memory_per_rank;
#ifdef MOETRON_HAVE_CUDA
  if (backend == "cuda") {
    int devices = 0;
    size_t free_bytes = 0, total = 0;
    MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0, "no CUDA device");
    MOETRON_CHECK(cudaSetDevice(local_rank % devices) == cudaSuccess &&
                      cudaMemGetInfo(&free_bytes, &total) == cudaSuccess,
                  "cannot read the memory of CUDA device " << local_rank % devices);
    // Ranks sharing a GPU share its memory.
    const int sharing = std::max(1, (ranks_on_node + devices - 1) / devices);
    return static_cast<int64_t>(free_bytes) / sharing;
  }
#endif
  (void)backend;
  (void)local_rank;
  const int64_t host = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  return host / std::max(1, ranks_on_node);
}

std::unique_ptr<Ops> make_ops(const std::string& backend, int local_rank, size_t arena_bytes) {
  if (backend == "cpu") return make_cpu_ops();
#ifdef MOETRON_HAVE_CUDA
  int devices = 0;
  MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0, "no CUDA device");
  return make_cuda_ops(local_rank % devices, arena_bytes);
#else
  (void)local_rank;
  (void)arena_bytes;
  MOETRON_FAIL("no CUDA backend in this build");
#endif
}

// Groups that carry device tensors (tp, stage, pipeline) get a device transport: NCCL when
// every rank on this node has a GPU of its own, else MPI through host buffers (NCCL refuses
// two ranks on one GPU). The world and replica groups carry only host data and stay on MPI.
void use_device_transport(ParallelGroups& g, Ops& ops, int ranks_on_node) {
  if (ops.device() != Device::Cuda) return;
#ifdef MOETRON_HAVE_CUDA
  int devices = 0;
  MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess, "cudaGetDeviceCount failed");
  // Every rank must choose the same transport, so the node with the most ranks per GPU decides.
  std::vector<int64_t> shares_gpu = {ranks_on_node > devices ? 1 : 0};
  g.world->allreduce_host(shares_gpu, /*max_instead_of_sum=*/true);
  const bool nccl = shares_gpu[0] == 0;
  if (!nccl)
    LOG_INFO(ranks_on_node << " ranks share " << devices
                           << " GPU(s) on this node: NCCL refuses that, so the MPI transport carries "
                              "device tensors through host memory");
  auto* cuda = dynamic_cast<CudaOps*>(&ops);
  for (std::shared_ptr<Communicator>* group : {&g.tp, &g.stage, &g.pipeline}) {
    auto mpi = std::dynamic_pointer_cast<MpiCommunicator>(*group);
    if (!mpi) continue;  // a group of one moves nothing
    if (nccl) {
      *group = make_nccl_communicator(mpi, cuda->stream());
    } else {
      *group = make_staged_communicator(mpi, ops);
    }
  }
#else
  (void)g;
  (void)ranks_on_node;
#endif
}

}  // namespace moetron::apps
