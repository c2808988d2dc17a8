// NcclCommunicator: the Communicator for device tensors on GPUs, one NCCL communicator per
// group, all work enqueued on the backend's stream (so it can be recorded in a CUDA graph).
// Host-side control values go over the group's MPI communicator.
#pragma once
#include <memory>

#include "moetron/comm/communicator.hpp"

typedef struct CUstream_st* cudaStream_t;

namespace moetron {

class MpiCommunicator;

// Collective over `group` (its MPI members): rank 0 makes the NCCL id and broadcasts it.
std::unique_ptr<Communicator> make_nccl_communicator(std::shared_ptr<MpiCommunicator> group,
                                                     cudaStream_t stream);

}  // namespace moetron
