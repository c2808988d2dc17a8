// Which GPU each rank uses, and whether ranks share GPUs, decided from every rank's view.
//
// Under Slurm (`srun --gpus-per-task=1`) or site mpirun wrappers each rank may see only its own
// device through CUDA_VISIBLE_DEVICES, so a rank's visible device count says nothing about its
// neighbours. Sharing is therefore decided from the devices' UUIDs gathered over the world:
// ranks bound to the same UUID share a GPU; different UUIDs do not, whatever each rank sees.
//
// bind_devices is the decision, a pure function of every rank's record; gather_rank_devices is
// the MPI gather around it. The CUDA queries and what is built from the decision (Ops, device
// transports, memory budget) are in device_setup.hpp.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moetron {

// What one rank sees.
struct RankDevices {
  std::string host;
  std::vector<std::string> uuids;  // the devices visible to the rank, in CUDA's order
  int node_local_rank = 0;         // index among the ranks of its node
  std::vector<int> cpus;           // the cores it may run on (its affinity); empty: unknown
};

// What one rank is bound to.
struct DeviceBinding {
  int device = -1;               // index among the rank's visible devices; -1: no GPU
  std::string uuid;              // of that device ("" without one)
  int ranks_sharing_device = 1;  // ranks bound to this rank's GPU, itself included
  int ranks_on_node = 1;
  int node_local_rank = 0;
  int cores_on_node = 0;  // the cores its node's ranks may run on together (the union of their
                          // affinities: taskset, srun, mpirun's binding); 0: unknown
  bool node_shares_gpu = false;   // some GPU of this rank's node serves several ranks
  bool world_shares_gpu = false;  // some GPU anywhere serves several ranks
  // Transport for groups carrying device tensors: "nccl" when every rank has a GPU of its own
  // (NCCL refuses two ranks on one GPU), else "mpi" (through host buffers); "" with no GPUs.
  std::string transport;
};

// One binding per rank (same order as `ranks`). A rank seeing one device uses it; a rank seeing
// several uses the k-th (mod their count), k being its position among the ranks of its node
// that see the same device list (the node-local rank when every rank sees every device).
// Ranks with no device get device -1; if some ranks have one and others not, Error (naming the
// rank and host): a run uses GPUs on every rank or on none.
std::vector<DeviceBinding> bind_devices(const std::vector<RankDevices>& ranks);

// One log line per node: host, its ranks, its devices and who uses them, the transport chosen.
// E.g. "node gpu01: ranks 0-3, 2 GPUs (GPU-a: ranks 0,1; GPU-b: ranks 2,3), ranks share GPUs:
// device transport mpi", or "node n0: rank 0, no GPU: transport mpi".
std::vector<std::string> describe_bindings(const std::vector<RankDevices>& ranks,
                                           const std::vector<DeviceBinding>& bindings);

// This process's host name.
std::string host_name();

// Every rank's record, in world rank order (collective over `world`). `mine.host` and
// `mine.node_local_rank` are filled in here (host name; MPI_COMM_TYPE_SHARED split), and
// `mine.cpus` from cpu_affinity_cores() (backend/cpu_ops.hpp) when empty.
std::vector<RankDevices> gather_rank_devices(MPI_Comm world, RankDevices mine);

// Test hook MOETRON_TEST_GPU_UUIDS: ';'-separated per world rank (rank r takes entry
// r mod count), each a ','-separated list of the UUIDs that rank sees (an empty entry: none).
// Returns false when the variable is unset; read only by the binding code.
bool test_hook_uuids(int world_rank, std::vector<std::string>* uuids);

}  // namespace moetron
