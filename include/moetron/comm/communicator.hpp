// Communicator: the data movement the model and engine need, over one group of ranks. MPI and
// NCCL implement it; a group of one rank is SelfCommunicator (every call a copy or nothing).
// Tensors live in the memory of the backend that made them; an implementation that cannot read
// that memory directly (MPI with CUDA tensors) stages through the host.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moetron/core/error.hpp"
#include "moetron/core/tensor.hpp"

namespace moetron {

// Bytes a rank moved to and from other ranks of a group.
struct Traffic {
  int64_t sent = 0, received = 0;
};

// Counts what the bandwidth-optimal algorithm moves, not what a particular library chose, so
// counts are the same on every MPI and for NCCL: all-reduce as reduce-scatter + all-gather
// (2(n-1)/n of the buffer each way), all-gather and all-to-all(v) as direct exchange with each
// peer, broadcast as the root sending to each peer, point-to-point as the message. Data a rank
// keeps for itself is not counted.
class TrafficCounter {
 public:
  TrafficCounter(int rank, int size) : rank_(rank), size_(size) {}
  void allreduce(int64_t bytes) {
    const int64_t moved = 2 * (size_ - 1) * bytes / size_;
    add(moved, moved);
  }
  void allgather(int64_t bytes_per_rank) { add((size_ - 1) * bytes_per_rank, (size_ - 1) * bytes_per_rank); }
  void alltoallv(const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows, int64_t row_bytes) {
    add(others(send_rows) * row_bytes, others(recv_rows) * row_bytes);
  }
  void broadcast(int root, int64_t bytes) {
    add(rank_ == root ? (size_ - 1) * bytes : 0, rank_ == root ? 0 : bytes);
  }
  void add(int64_t sent, int64_t received) {
    total_.sent += sent;
    total_.received += received;
  }
  Traffic total() const { return total_; }

 private:
  int64_t others(const std::vector<int64_t>& per_peer) const {
    int64_t s = 0;
    for (size_t p = 0; p < per_peer.size(); ++p) s += static_cast<int>(p) == rank_ ? 0 : per_peer[p];
    return s;
  }
  int rank_, size_;
  Traffic total_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string transport() const = 0;  // "self", "mpi", "nccl", "mpi+staged"
  // Everything this rank moved through the group so far, device tensors and host values alike,
  // as TrafficCounter counts it (a group of one moves nothing).
  virtual Traffic traffic() const { return {}; }
  // Corrections from a recorder of device work (CUDA graphs): the calls made while recording a
  // step moved nothing then (it subtracts them), and each replay moves them again (it adds
  // them). Only a transport that can be recorded moves anything in a recorded step.
  virtual void adjust_traffic(const Traffic& delta) {
    MOETRON_CHECK(delta.sent == 0 && delta.received == 0,
                  "the " << transport() << " transport moved data inside a recorded step");
  }

  // Takes back what this rank moved for a warm-up forward (engine/warm_up.hpp): not the run's
  // traffic. Every transport that counts overrides it; a group that counts nothing has nothing
  // to take back.
  virtual void forget_traffic(const Traffic& moved) {
    MOETRON_CHECK(moved.sent == 0 && moved.received == 0,
                  "the " << transport() << " transport cannot take back the traffic it counted");
  }

  // Seconds this rank has spent blocked in the group's calls so far: waiting for the peers to
  // arrive and the transfer itself. Only a transport that blocks the host counts it (MPI, also
  // under staging); the others (self, NCCL, emulated) report 0.
  virtual double blocked_seconds() const { return 0; }

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
