// MpiCommunicator: Communicator over an MPI communicator, for host-memory tensors (F32, F16,
// BF16, I32, I64). Reductions of 16-bit floats are summed in float32 and rounded once.
//
// Traffic is counted by TrafficCounter (communicator.hpp). Every call starts MPI's non-blocking
// form and completes it through the collective watchdog (collective_watchdog.hpp), so a peer
// that never arrives ends the job after --collective-timeout instead of hanging it.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moetron/comm/communicator.hpp"

namespace moetron {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction) and sets MPI_ERRORS_RETURN on it.
  // Collective over `comm` (its members agree on an id for the watchdog); `label` names the
  // group in the watchdog's messages ("tp group").
  explicit MpiCommunicator(MPI_Comm comm, std::string label = "group");
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
  Traffic traffic() const override { return counter_.total(); }
  void forget_traffic(const Traffic& moved) override { counter_.add(-moved.sent, -moved.received); }
  double blocked_seconds() const override { return blocked_s_; }
  int64_t bytes_sent() const { return counter_.total().sent; }
  int64_t bytes_received() const { return counter_.total().received; }

 private:
  // Waits for `request`, the operation `op` of this group (with group rank `peer` for a
  // send/recv), under the watchdog.
  void wait(MPI_Request& request, const char* op, int peer = -1, MPI_Status* status = MPI_STATUS_IGNORE);
  void reduce_in_place(void* data, int64_t n, MPI_Datatype type, MPI_Op op);
  void broadcast_raw(void* data, int64_t n, MPI_Datatype type, int root);

  MPI_Comm comm_;
  std::string label_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;  // of the members, in group order
  int64_t group_id_ = 0;
  int64_t collectives_ = 0;  // started on this group so far: the roll call's sequence number
  TrafficCounter counter_{0, 1};
  double blocked_s_ = 0;  // in wait(), see blocked_seconds
};

// A communicator over a duplicate of `comm` (the caller keeps its own handle).
std::unique_ptr<MpiCommunicator> make_mpi_communicator(MPI_Comm comm, std::string label = "group");

// Every rank's string, in rank order (collective over `comm`; for setup and provenance, not
// counted as traffic).
std::vector<std::string> allgather_strings(const std::string& mine, MPI_Comm comm);

}  // namespace moetron
