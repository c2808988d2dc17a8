#include "moetron/comm/mpi_communicator.hpp"

#include <chrono>
#include <climits>
#include <numeric>

#include "moetron/comm/collective_watchdog.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

namespace {

MPI_Datatype element_type(DType t) {
  switch (t) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F16:
    case DType::BF16:
      return MPI_UINT16_T;  // moved as bits; reductions convert first
    case DType::I32:
      return MPI_INT32_T;
    case DType::I64:
      return MPI_INT64_T;
  }
  MOETRON_FAIL("MPI communicator: unsupported dtype " << static_cast<int>(t));
}

// MPI counts are int: refuse (rather than wrap) a message too large for one call.
int mpi_count(int64_t n, const char* op) {
  MOETRON_CHECK(n >= 0 && n <= INT_MAX,
                op << ": " << n << " elements exceed what one MPI call can move (2^31 - 1)");
  return static_cast<int>(n);
}

void require_host(const Tensor& t, const char* op) {
  MOETRON_CHECK(t.device == Device::Cpu,
                op << ": the MPI communicator moves host tensors only, got " << t.describe());
  MOETRON_CHECK(t.numel() == 0 || t.data, op << ": tensor " << t.describe() << " has no memory");
}

void require_peer(int peer, int size, const char* op) {
  MOETRON_CHECK(peer >= 0 && peer < size,
                op << ": rank " << peer << " is outside the group of " << size);
}

// Element offsets of consecutive blocks of `rows[p]` rows of `cols` elements.
void row_blocks(const std::vector<int64_t>& rows, int64_t cols, const char* op,
                std::vector<int>& counts, std::vector<int>& displs) {
  counts.resize(rows.size());
  displs.resize(rows.size());
  int64_t offset = 0;
  for (size_t p = 0; p < rows.size(); ++p) {
    MOETRON_CHECK(rows[p] >= 0, op << ": negative row count " << rows[p] << " for rank " << p);
    counts[p] = mpi_count(rows[p] * cols, op);
    displs[p] = mpi_count(offset, op);
    offset += rows[p] * cols;
  }
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string label) : comm_(comm), label_(std::move(label)) {
  check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  counter_ = TrafficCounter(rank_, size_);
  world_ranks_ = world_ranks_of(comm_);
  group_id_ = agree_group_id(comm_);
}

void MpiCommunicator::wait(MPI_Request& request, const char* op, int peer, MPI_Status* status) {
  if (peer < 0) ++collectives_;
  const int world_peer = peer < 0 ? -1 : world_ranks_[static_cast<size_t>(peer)];
  const auto start = std::chrono::steady_clock::now();
  wait_for_request(request, status, make_wait_site(op, label_, group_id_, collectives_, world_peer),
                   world_ranks_);
  blocked_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void MpiCommunicator::reduce_in_place(void* data, int64_t n, MPI_Datatype type, MPI_Op op) {
  MPI_Request request;
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, mpi_count(n, "MPI_Iallreduce"), type, op, comm_, &request),
            "MPI_Iallreduce");
  wait(request, "allreduce");
}

void MpiCommunicator::broadcast_raw(void* data, int64_t n, MPI_Datatype type, int root) {
  MPI_Request request;
  check_mpi(MPI_Ibcast(data, mpi_count(n, "MPI_Ibcast"), type, root, comm_, &request), "MPI_Ibcast");
  wait(request, "broadcast");
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  // After MPI_Finalize every handle is gone already; a failing free cannot be reported here.
  if (!finalized && comm_ != MPI_COMM_NULL && comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiCommunicator> make_mpi_communicator(MPI_Comm comm, std::string label) {
  MPI_Comm dup;
  check_mpi(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup");
  return std::make_unique<MpiCommunicator>(dup, std::move(label));
}

void MpiCommunicator::allreduce_sum(Tensor& t) {
  require_host(t, "allreduce_sum");
  const int64_t n = t.numel();
  if (t.dtype == DType::BF16 || t.dtype == DType::F16) {
    std::vector<float> wide(static_cast<size_t>(n));
    convert_to_float(t.data, t.dtype, wide.data(), wide.size());
    reduce_in_place(wide.data(), n, MPI_FLOAT, MPI_SUM);
    convert_from_float(wide.data(), t.dtype, t.data, wide.size());
  } else {
    reduce_in_place(t.data, n, element_type(t.dtype), MPI_SUM);
  }
  counter_.allreduce(static_cast<int64_t>(t.nbytes()));
}

void MpiCommunicator::allgather(const Tensor& in, Tensor& out) {
  require_host(in, "allgather");
  require_host(out, "allgather");
  MOETRON_CHECK(out.dtype == in.dtype && out.numel() == in.numel() * size_ &&
                    out.ndim() == in.ndim() && out.dim(0) == in.dim(0) * size_,
                "allgather: output " << out.describe() << " is not " << size_ << " x input "
                                     << in.describe() << " along dimension 0");
  const int n = mpi_count(in.numel(), "MPI_Iallgather");
  MPI_Datatype type = element_type(in.dtype);
  MPI_Request request;
  check_mpi(MPI_Iallgather(in.data, n, type, out.data, n, type, comm_, &request), "MPI_Iallgather");
  wait(request, "allgather");
  counter_.allgather(static_cast<int64_t>(in.nbytes()));
}

void MpiCommunicator::alltoallv(const Tensor& send, const std::vector<int64_t>& send_rows,
                                Tensor& recv, const std::vector<int64_t>& recv_rows) {
  require_host(send, "alltoallv");
  require_host(recv, "alltoallv");
  MOETRON_CHECK(send_rows.size() == static_cast<size_t>(size_) &&
                    recv_rows.size() == static_cast<size_t>(size_),
                "alltoallv: " << send_rows.size() << " send and " << recv_rows.size()
                              << " receive counts for a group of " << size_);
  MOETRON_CHECK(send.dtype == recv.dtype && send.cols() == recv.cols(),
                "alltoallv: send " << send.describe() << " and receive " << recv.describe()
                                   << " differ in dtype or row width");
  const int64_t cols = send.cols();
  std::vector<int> scounts, sdispls, rcounts, rdispls;
  row_blocks(send_rows, cols, "alltoallv", scounts, sdispls);
  row_blocks(recv_rows, cols, "alltoallv", rcounts, rdispls);
  int64_t total_send = std::accumulate(send_rows.begin(), send_rows.end(), int64_t{0});
  int64_t total_recv = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  MOETRON_CHECK(total_send <= send.rows() && total_recv <= recv.rows(),
                "alltoallv: " << total_send << " rows to send from " << send.describe() << ", "
                              << total_recv << " to receive into " << recv.describe());
  MPI_Datatype type = element_type(send.dtype);
  MPI_Request request;
  check_mpi(MPI_Ialltoallv(send.data, scounts.data(), sdispls.data(), type, recv.data,
                           rcounts.data(), rdispls.data(), type, comm_, &request),
            "MPI_Ialltoallv");
  wait(request, "alltoallv");
  const int64_t row_bytes = cols * static_cast<int64_t>(dtype_size(send.dtype));
  counter_.alltoallv(send_rows, recv_rows, row_bytes);
}

void MpiCommunicator::send(const Tensor& t, int peer, int tag) {
  require_host(t, "send");
  require_peer(peer, size_, "send");
  MPI_Request request;
  check_mpi(MPI_Isend(t.data, mpi_count(t.numel(), "MPI_Isend"), element_type(t.dtype), peer, tag, comm_,
                      &request),
            "MPI_Isend");
  wait(request, "send", peer);
  counter_.add(static_cast<int64_t>(t.nbytes()), 0);
}

void MpiCommunicator::recv(Tensor& t, int peer, int tag) {
  require_host(t, "recv");
  require_peer(peer, size_, "recv");
  MPI_Status status;
  MPI_Request request;
  const int n = mpi_count(t.numel(), "MPI_Irecv");
  check_mpi(MPI_Irecv(t.data, n, element_type(t.dtype), peer, tag, comm_, &request), "MPI_Irecv");
  wait(request, "recv", peer, &status);
  int got = 0;
  check_mpi(MPI_Get_count(&status, element_type(t.dtype), &got), "MPI_Get_count");
  MOETRON_CHECK(got == n, "recv: expected " << n << " elements from rank " << peer << " (tag "
                                            << tag << "), got " << got);
  counter_.add(0, static_cast<int64_t>(t.nbytes()));
}

void MpiCommunicator::broadcast(Tensor& t, int root) {
  require_host(t, "broadcast");
  require_peer(root, size_, "broadcast");
  broadcast_raw(t.data, t.numel(), element_type(t.dtype), root);
  counter_.broadcast(root, static_cast<int64_t>(t.nbytes()));
}

void MpiCommunicator::barrier() {
  MPI_Request request;
  check_mpi(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier");
  wait(request, "barrier");
}

void MpiCommunicator::allreduce_host(std::vector<int64_t>& values, bool max_instead_of_sum) {
  reduce_in_place(values.data(), static_cast<int64_t>(values.size()), MPI_INT64_T,
                  max_instead_of_sum ? MPI_MAX : MPI_SUM);
  counter_.allreduce(static_cast<int64_t>(values.size() * sizeof(int64_t)));
}

std::vector<int64_t> MpiCommunicator::alltoall_host(const std::vector<int64_t>& counts) {
  MOETRON_CHECK(counts.size() == static_cast<size_t>(size_),
                "alltoall_host: " << counts.size() << " counts for a group of " << size_);
  std::vector<int64_t> received(counts.size());
  MPI_Request request;
  check_mpi(MPI_Ialltoall(counts.data(), 1, MPI_INT64_T, received.data(), 1, MPI_INT64_T, comm_, &request),
            "MPI_Ialltoall");
  wait(request, "alltoall");
  counter_.allgather(static_cast<int64_t>(sizeof(int64_t)));
  return received;
}

void MpiCommunicator::broadcast_host(std::vector<int64_t>& values, int root) {
  require_peer(root, size_, "broadcast_host");
  // The length goes first: only the root need know how many values there are.
  int64_t n = static_cast<int64_t>(values.size());
  broadcast_raw(&n, 1, MPI_INT64_T, root);
  values.resize(static_cast<size_t>(n));
  broadcast_raw(values.data(), n, MPI_INT64_T, root);
  counter_.broadcast(root, (n + 1) * static_cast<int64_t>(sizeof(int64_t)));
}

std::vector<std::string> allgather_strings(const std::string& mine, MPI_Comm comm) {
  int size = 1;
  check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  // A setup exchange on a communicator without an agreed id: the watchdog tells its two steps
  // apart by name.
  const std::vector<int> members = world_ranks_of(comm);
  const auto exchange = [&](const char* step, const char* call, int rc, MPI_Request& request) {
    check_mpi(rc, call);
    wait_for_request(request, MPI_STATUS_IGNORE,
                     make_wait_site(step, "setup exchange", WaitSite::kUntrackedGroup, 0, -1), members);
  };
  int length = mpi_count(static_cast<int64_t>(mine.size()), "allgather_strings");
  std::vector<int> lengths(static_cast<size_t>(size)), offsets(static_cast<size_t>(size));
  MPI_Request request;
  exchange("gather lengths", "MPI_Iallgather (lengths)",
           MPI_Iallgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm, &request), request);
  int64_t total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[r] = mpi_count(total, "allgather_strings");
    total += lengths[r];
  }
  std::string all(static_cast<size_t>(total), '\0');
  exchange("gather strings", "MPI_Iallgatherv (strings)",
           MPI_Iallgatherv(mine.data(), length, MPI_CHAR, &all[0], lengths.data(), offsets.data(), MPI_CHAR,
                           comm, &request),
           request);
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r) out.push_back(all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(lengths[r])));
  return out;
}

}  // namespace moetron
