#include "moetron/comm/staged_communicator.hpp"

#include "moetron/core/error.hpp"

namespace moetron {
namespace {

class StagedCommunicator : public Communicator {
 public:
  StagedCommunicator(std::shared_ptr<Communicator> inner, Ops& ops) : inner_(std::move(inner)), ops_(ops) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string transport() const override { return inner_->transport() + "+staged"; }
  // The host transport moves (and counts) everything.
  Traffic traffic() const override { return inner_->traffic(); }
  void forget_traffic(const Traffic& moved) override { inner_->forget_traffic(moved); }
  double blocked_seconds() const override { return inner_->blocked_seconds(); }

  void allreduce_sum(Tensor& t) override {
    Tensor h = to_host(t);
    inner_->allreduce_sum(h);
    back(h, t);
  }
  void allgather(const Tensor& in, Tensor& out) override {
    Tensor hin = to_host(in), hout = host_like(out);
    inner_->allgather(hin, hout);
    back(hout, out);
  }
  void alltoallv(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override {
    Tensor hs = to_host(send), hr = host_like(recv);
    inner_->alltoallv(hs, send_rows, hr, recv_rows);
    back(hr, recv);
  }
  void send(const Tensor& t, int peer, int tag) override { inner_->send(to_host(t), peer, tag); }
  void recv(Tensor& t, int peer, int tag) override {
    Tensor h = host_like(t);
    inner_->recv(h, peer, tag);
    back(h, t);
  }
  void broadcast(Tensor& t, int root) override {
    Tensor h = to_host(t);
    inner_->broadcast(h, root);
    back(h, t);
  }
  void barrier() override { inner_->barrier(); }
  void allreduce_host(std::vector<int64_t>& v, bool max_instead_of_sum) override {
    inner_->allreduce_host(v, max_instead_of_sum);
  }
  std::vector<int64_t> alltoall_host(const std::vector<int64_t>& counts) override {
    return inner_->alltoall_host(counts);
  }
  void broadcast_host(std::vector<int64_t>& v, int root) override { inner_->broadcast_host(v, root); }

 private:
  static Tensor host_like(const Tensor& t) { return host_tensor(t.dtype, t.shape); }
  Tensor to_host(const Tensor& t) {
    if (t.device == Device::Cpu) return t;
    Tensor h = host_like(t);
    if (t.numel() > 0) ops_.to_host(t, h.data);
    return h;
  }
  void back(const Tensor& h, Tensor& t) {
    if (t.device == Device::Cpu || t.numel() == 0) return;
    ops_.copy_from_host(t, h.data);
  }

  std::shared_ptr<Communicator> inner_;
  Ops& ops_;
};

}  // namespace

std::unique_ptr<Communicator> make_staged_communicator(std::shared_ptr<Communicator> host_transport,
                                                       Ops& ops) {
  return std::make_unique<StagedCommunicator>(std::move(host_transport), ops);
}

}  // namespace moetron
