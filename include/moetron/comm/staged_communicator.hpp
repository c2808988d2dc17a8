// StagedCommunicator: lets a host-memory transport (MPI) carry tensors that live in device
// memory, by copying them through host buffers with the backend's Ops. Used where NCCL cannot
// serve (several ranks on one GPU); logged when chosen. Host-side calls pass straight through.
#pragma once
#include <memory>

#include "moetron/backend/ops.hpp"
#include "moetron/comm/communicator.hpp"

namespace moetron {

std::unique_ptr<Communicator> make_staged_communicator(std::shared_ptr<Communicator> host_transport,
                                                       Ops& ops);

}  // namespace moetron
