#include "moetron/comm/nccl_communicator.hpp"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace {

#define NCCL_CHECK(call)                                                                    \
  do {                                                                                      \
    ncclResult_t rc_ = (call);                                                              \
    MOETRON_CHECK(rc_ == ncclSuccess, #call << " failed: " << ncclGetErrorString(rc_)); \
  } while (0)

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F16: return ncclFloat16;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
  }
  MOETRON_FAIL("NCCL: unsupported dtype");
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<MpiCommunicator> mpi, cudaStream_t stream)
      : mpi_(std::move(mpi)), stream_(stream) {
    ncclUniqueId id;
    if (mpi_->rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    check_mpi(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, mpi_->comm()), "MPI_Bcast (NCCL id)");
    NCCL_CHECK(ncclCommInitRank(&comm_, mpi_->size(), id, mpi_->rank()));
  }
  ~NcclCommunicator() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }

  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  std::string transport() const override { return "nccl"; }
  void adjust_traffic(const Traffic& delta) override { counter_.add(delta.sent, delta.received); }
  // Taken back from the device count: only the total (traffic()) is ever read.
  void forget_traffic(const Traffic& moved) override { counter_.add(-moved.sent, -moved.received); }
  // Device tensors counted here, host values by the MPI group that carries them.
  Traffic traffic() const override {
    const Traffic device = counter_.total(), host = mpi_->traffic();
    return {device.sent + host.sent, device.received + host.received};
  }

  void allreduce_sum(Tensor& t) override {
    NCCL_CHECK(ncclAllReduce(t.data, t.data, static_cast<size_t>(t.numel()), nccl_type(t.dtype), ncclSum,
                             comm_, stream_));
    counter_.allreduce(static_cast<int64_t>(t.nbytes()));
  }
  void allgather(const Tensor& in, Tensor& out) override {
    MOETRON_ASSERT(out.numel() == in.numel() * size());
    NCCL_CHECK(ncclAllGather(in.data, out.data, static_cast<size_t>(in.numel()), nccl_type(in.dtype),
                             comm_, stream_));
    counter_.allgather(static_cast<int64_t>(in.nbytes()));
  }
  void alltoallv(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override {
    const size_t row = static_cast<size_t>(send.cols()) * dtype_size(send.dtype);
    size_t s_off = 0, r_off = 0;
    NCCL_CHECK(ncclGroupStart());
    for (int p = 0; p < size(); ++p) {
      const size_t sb = static_cast<size_t>(send_rows[p]) * row, rb = static_cast<size_t>(recv_rows[p]) * row;
      if (sb > 0) NCCL_CHECK(ncclSend(static_cast<char*>(send.data) + s_off, sb, ncclChar, p, comm_, stream_));
      if (rb > 0) NCCL_CHECK(ncclRecv(static_cast<char*>(recv.data) + r_off, rb, ncclChar, p, comm_, stream_));
      s_off += sb;
      r_off += rb;
    }
    NCCL_CHECK(ncclGroupEnd());
    counter_.alltoallv(send_rows, recv_rows, static_cast<int64_t>(row));
  }
  void send(const Tensor& t, int peer, int /*tag*/) override {
    NCCL_CHECK(ncclSend(t.data, t.nbytes(), ncclChar, peer, comm_, stream_));
    counter_.add(static_cast<int64_t>(t.nbytes()), 0);
  }
  void recv(Tensor& t, int peer, int /*tag*/) override {
    NCCL_CHECK(ncclRecv(t.data, t.nbytes(), ncclChar, peer, comm_, stream_));
    counter_.add(0, static_cast<int64_t>(t.nbytes()));
  }
  void broadcast(Tensor& t, int root) override {
    NCCL_CHECK(ncclBroadcast(t.data, t.data, t.nbytes(), ncclChar, root, comm_, stream_));
    counter_.broadcast(root, static_cast<int64_t>(t.nbytes()));
  }
  void barrier() override {
    MOETRON_CHECK(cudaStreamSynchronize(stream_) == cudaSuccess, "cudaStreamSynchronize failed");
    mpi_->barrier();
  }
  void allreduce_host(std::vector<int64_t>& v, bool max_instead_of_sum) override {
    mpi_->allreduce_host(v, max_instead_of_sum);
  }
  std::vector<int64_t> alltoall_host(const std::vector<int64_t>& counts) override {
    return mpi_->alltoall_host(counts);
  }
  void broadcast_host(std::vector<int64_t>& v, int root) override { mpi_->broadcast_host(v, root); }

 private:
  std::shared_ptr<MpiCommunicator> mpi_;
  cudaStream_t stream_;
  ncclComm_t comm_ = nullptr;
  TrafficCounter counter_{mpi_->rank(), mpi_->size()};
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::shared_ptr<MpiCommunicator> group,
                                                     cudaStream_t stream) {
  return std::make_unique<NcclCommunicator>(std::move(group), stream);
}

}  // namespace moetron
