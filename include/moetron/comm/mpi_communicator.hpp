// MpiCommunicator: Communicator over an MPI communicator, for host-memory tensors (F32, F16,
// BF16, I32, I64). Reductions of 16-bit floats are summed in float32 and rounded once.
//
// Traffic counters (for results files) count what the bandwidth-optimal algorithm moves, not
// what a particular MPI library chose, so they are the same on every MPI and comparable with
// NCCL: all-reduce as reduce-scatter + all-gather (2(n-1)/n of the buffer each way), all-gather
// and all-to-all(v) as direct exchange with each peer, broadcast as the root sending to each
// peer, point-to-point as the message. Data a rank keeps for itself is not counted.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>

#include "moetron/comm/communicator.hpp"

namespace moetron {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction) and sets MPI_ERRORS_RETURN on it.
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string transport() const override { return "mpi"; }

  void allreduce_sum(Tensor& t) override;
  void allgather(const Tensor& in, Tensor& out) override;
  void alltoallv(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override;
  void send(const Tensor& t, int peer, int tag) override;
  void recv(Tensor& t, int peer, int tag) override;
  void broadcast(Tensor& t, int root) override;
  void barrier() override;

  void allreduce_host(std::vector<int64_t>& values, bool max_instead_of_sum) override;
  std::vector<int64_t> alltoall_host(const std::vector<int64_t>& counts) override;
  void broadcast_host(std::vector<int64_t>& values, int root) override;

  MPI_Comm comm() const { return comm_; }
  int64_t bytes_sent() const { return bytes_sent_; }
  int64_t bytes_received() const { return bytes_received_; }

 private:
  void count(int64_t sent, int64_t received) {
    bytes_sent_ += sent;
    bytes_received_ += received;
  }
  void count_allreduce(int64_t bytes) {
    int64_t moved = 2 * (size_ - 1) * bytes / size_;
    count(moved, moved);
  }
  void count_broadcast(int root, int64_t bytes) {
    count(rank_ == root ? (size_ - 1) * bytes : 0, rank_ == root ? 0 : bytes);
  }

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  int64_t bytes_sent_ = 0;
  int64_t bytes_received_ = 0;
};

// A communicator over a duplicate of `comm` (the caller keeps its own handle).
std::unique_ptr<MpiCommunicator> make_mpi_communicator(MPI_Comm comm);

}  // namespace moetron
