// SelfCommunicator: the group of one. Collectives are copies (or nothing); a send to itself is
// queued until the matching receive, as MPI would buffer it.
#include <cstring>
#include <deque>

#include "moetron/comm/communicator.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

namespace {

class SelfCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string transport() const override { return "self"; }

  void allreduce_sum(Tensor&) override {}

  void allgather(const Tensor& in, Tensor& out) override {
    require_same_bytes(in, out, "allgather");
    copy(in, out);
  }

  void alltoallv(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override {
    MOETRON_CHECK(send_rows.size() == 1 && recv_rows.size() == 1 && send_rows[0] == recv_rows[0],
                  "alltoallv: a group of one sends its rows to itself: expected one equal send "
                  "and receive count");
    MOETRON_CHECK(send.dtype == recv.dtype && send.cols() == recv.cols() && send_rows[0] >= 0 &&
                      send_rows[0] <= send.rows() && send_rows[0] <= recv.rows(),
                  "alltoallv: " << send_rows[0] << " rows from " << send.describe() << " into "
                                << recv.describe());
    if (send_rows[0] > 0) {
      Tensor out = recv.slice_rows(0, send_rows[0]);
      copy(send.slice_rows(0, send_rows[0]), out);
    }
  }

  void send(const Tensor& t, int peer, int tag) override {
    require_self(peer, "send");
    Tensor copy_of = host_tensor(t.dtype, t.shape);
    copy(t, copy_of);
    pending_.push_back({tag, copy_of});
  }

  void recv(Tensor& t, int peer, int tag) override {
    require_self(peer, "recv");
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (it->tag != tag) continue;
      MOETRON_CHECK(it->data.dtype == t.dtype && it->data.numel() == t.numel(),
                    "recv: expected " << t.numel() << " elements from rank 0 (tag " << tag
                                      << "), got " << it->data.describe());
      copy(it->data, t);
      pending_.erase(it);
      return;
    }
    // Blocking here would hang forever: nothing else can ever send to a group of one.
    MOETRON_FAIL("recv: no message with tag " << tag << " was sent to this group of one");
  }

  void broadcast(Tensor&, int root) override { require_self(root, "broadcast"); }
  void barrier() override {}
  void allreduce_host(std::vector<int64_t>&, bool) override {}

  std::vector<int64_t> alltoall_host(const std::vector<int64_t>& counts) override {
    MOETRON_CHECK(counts.size() == 1,
                  "alltoall_host: " << counts.size() << " counts for a group of one");
    return counts;
  }

  void broadcast_host(std::vector<int64_t>&, int root) override {
    require_self(root, "broadcast_host");
  }

 private:
  struct Message {
    int tag;
    Tensor data;
  };

  static void require_self(int peer, const char* op) {
    MOETRON_CHECK(peer == 0, op << ": rank " << peer << " is outside the group of one");
  }
  static void require_same_bytes(const Tensor& a, const Tensor& b, const char* op) {
    MOETRON_CHECK(a.dtype == b.dtype && a.numel() == b.numel(),
                  op << ": " << a.describe() << " does not fit " << b.describe());
  }
  // Host memory only (this library has no CUDA): for device tensors, callers skip the calls
  // that would copy on a group of one.
  static void copy(const Tensor& from, Tensor& to) {
    MOETRON_CHECK(from.device == Device::Cpu && to.device == Device::Cpu,
                  "self communicator: copies host tensors only, got " << from.describe());
    if (from.data != to.data && from.nbytes() > 0) std::memcpy(to.data, from.data, from.nbytes());
  }

  std::deque<Message> pending_;
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() {
  return std::make_unique<SelfCommunicator>();
}

}  // namespace moetron
