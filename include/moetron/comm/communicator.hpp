// Communicator: the data movement the model and engine need, over one group of ranks. MPI and
// NCCL implement it; a group of one rank is SelfCommunicator (every call a copy or nothing).
// Tensors live in the memory of the backend that made them; an implementation that cannot read
// that memory directly (MPI with CUDA tensors) stages through the host.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moetron/core/tensor.hpp"

namespace moetron {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string transport() const = 0;  // "self", "mpi", "nccl"

  // In-place sum over the group (F32 or BF16 tensors).
  virtual void allreduce_sum(Tensor& t) = 0;
  // out = concatenation along dim 0 of every rank's `in` (all of the same shape), rank order.
  virtual void allgather(const Tensor& in, Tensor& out) = 0;
  // Rows of width in.cols(): rank r sends send_rows[p] consecutive rows to each peer p (in peer
  // order) and receives recv_rows[p] rows from each peer into `recv` (in peer order).
  virtual void alltoallv(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                         const std::vector<int64_t>& recv_rows) = 0;
  virtual void send(const Tensor& t, int peer, int tag) = 0;
  virtual void recv(Tensor& t, int peer, int tag) = 0;
  virtual void broadcast(Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  // Host-side control values (small): element-wise over the group.
  virtual void allreduce_host(std::vector<int64_t>& values, bool max_instead_of_sum) = 0;
  // counts[p] sent to peer p; returns what each peer sent to this rank.
  virtual std::vector<int64_t> alltoall_host(const std::vector<int64_t>& counts) = 0;
  virtual void broadcast_host(std::vector<int64_t>& values, int root) = 0;
};

// A group of one: the single-rank case with no MPI at all.
std::unique_ptr<Communicator> make_self_communicator();

}  // namespace moetron
