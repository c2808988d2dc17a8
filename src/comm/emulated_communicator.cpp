#include "moetron/comm/emulated_communicator.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

#include "moetron/core/error.hpp"

namespace moetron {

// ---- scratch and stand-in memory ----

struct EmulationBuffers::Impl {
  Ops& ops;
  std::vector<uint8_t> host_sink;
  Tensor device_sink;  // I32 [n]: viewed as whatever it stands in for
  std::map<DType, std::vector<uint8_t>> host_stand_in;
  std::map<DType, Tensor> device_stand_in;

  explicit Impl(Ops& o) : ops(o) {}

  // Values of unit variance from a fixed LCG, so every run reads the same stand-in: a router
  // fed with them splits tokens over experts as it would a real residual stream, where zeros
  // would send every token to the same experts. Integer tensors get zeros.
  static std::vector<uint8_t> stand_in_values(DType dtype, size_t bytes) {
    const size_t width = dtype_size(dtype), n = (bytes + width - 1) / width;
    std::vector<uint8_t> out((n * width + 3) / 4 * 4, 0);  // whole words: uploaded as I32
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      // Uniform on [-sqrt(3), sqrt(3)): mean 0, variance 1.
      const float v = (static_cast<float>(state >> 40) / 16777216.0f * 2.0f - 1.0f) * 1.7320508f;
      if (dtype == DType::F32) {
        std::memcpy(&out[i * width], &v, width);
      } else if (dtype == DType::BF16 || dtype == DType::F16) {
        const uint16_t h = dtype == DType::BF16 ? float_to_bf16(v) : float_to_f16(v);
        std::memcpy(&out[i * width], &h, width);
      }
    }
    return out;
  }

  static Tensor view(void* data, const Tensor& like) {
    Tensor t;
    t.data = data;
    t.dtype = like.dtype;
    t.shape = like.shape;
    t.device = like.device;
    return t;
  }

  Tensor device_bytes(size_t bytes) {
    const int64_t words = static_cast<int64_t>((bytes + 3) / 4);
    return ops.alloc(DType::I32, {std::max<int64_t>(words, 1)});
  }

  Tensor sink(const Tensor& like) {
    const size_t bytes = like.nbytes();
    if (like.device == Device::Cpu) {
      if (host_sink.size() < bytes) host_sink.resize(bytes);
      return view(host_sink.data(), like);
    }
    if (!device_sink.defined() || device_sink.nbytes() < bytes) device_sink = device_bytes(bytes);
    return view(device_sink.data, like);
  }

  Tensor stand_in(const Tensor& like) {
    const size_t bytes = like.nbytes();
    std::vector<uint8_t>& host = host_stand_in[like.dtype];
    if (host.size() < bytes) host = stand_in_values(like.dtype, bytes);
    if (like.device == Device::Cpu) return view(host.data(), like);
    Tensor& dev = device_stand_in[like.dtype];
    if (!dev.defined() || dev.nbytes() < bytes) {
      dev = device_bytes(host.size());
      Tensor whole = dev;
      whole.dtype = DType::I32;
      ops.copy_from_host(whole, host.data());
    }
    return view(dev.data, like);
  }
};

EmulationBuffers::EmulationBuffers(Ops& ops, size_t reserve_bytes) : impl_(std::make_shared<Impl>(ops)) {
  // Host memory grows freely. The stand-in is made when first read: only pipeline receives
  // read it, and steps with pp > 1 are never recorded.
  if (ops.device() == Device::Cpu || reserve_bytes == 0) return;
  impl_->device_sink = impl_->device_bytes(reserve_bytes);
}

Tensor EmulationBuffers::sink(const Tensor& like) { return impl_->sink(like); }
Tensor EmulationBuffers::stand_in(const Tensor& like) { return impl_->stand_in(like); }

void EmulationBuffers::copy(const Tensor& src, Tensor& dst) {
  MOETRON_CHECK(src.dtype == dst.dtype && src.numel() == dst.numel() && src.device == dst.device,
                "emulated communicator: copy of " << src.describe() << " into " << dst.describe());
  if (src.numel() == 0 || src.data == dst.data) return;
  if (src.device == Device::Cpu) {
    std::memcpy(dst.data, src.data, src.nbytes());
  } else {
    impl_->ops.copy(src, dst);
  }
}

void EmulationBuffers::fill_zero(Tensor& t) {
  if (t.numel() == 0) return;
  if (t.device == Device::Cpu) {
    std::memset(t.data, 0, t.nbytes());
  } else {
    impl_->ops.fill_zero(t);
  }
}

// ---- the communicator ----

namespace {

class EmulatedCommunicator : public Communicator {
 public:
  EmulatedCommunicator(int rank, int size, std::shared_ptr<EmulationBuffers> buffers)
      : rank_(rank), size_(size), buffers_(std::move(buffers)), counter_(rank, size) {
    MOETRON_CHECK(size >= 1 && rank >= 0 && rank < size,
                  "emulated communicator: rank " << rank << " of a group of " << size);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string transport() const override { return "emulated"; }
  Traffic traffic() const override { return counter_.total(); }
  // Device copies can be recorded (CUDA graphs): a replay moves the recorded bytes again.
  void adjust_traffic(const Traffic& delta) override { counter_.add(delta.sent, delta.received); }
  void forget_traffic(const Traffic& moved) override { counter_.add(-moved.sent, -moved.received); }

  void allreduce_sum(Tensor& t) override {
    Tensor scratch = buffers_->sink(t);
    buffers_->copy(t, scratch);
    counter_.allreduce(static_cast<int64_t>(t.nbytes()));
  }

  void allgather(const Tensor& in, Tensor& out) override {
    MOETRON_CHECK(in.dtype == out.dtype && out.numel() == in.numel() * size_,
                  "allgather: " << in.describe() << " from each of " << size_ << " ranks into " << out.describe());
    const int64_t rows = in.numel() / std::max<int64_t>(in.cols(), 1);
    Tensor flat_out = out.reshape({size_ * rows, std::max<int64_t>(in.cols(), 1)});
    fill_repeated(in.reshape({rows, std::max<int64_t>(in.cols(), 1)}), flat_out);
    counter_.allgather(static_cast<int64_t>(in.nbytes()));
  }

  void alltoallv(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                 const std::vector<int64_t>& recv_rows) override {
    check_counts(send_rows, send.rows(), "send");
    check_counts(recv_rows, recv.rows(), "receive");
    MOETRON_CHECK(send.dtype == recv.dtype && send.cols() == recv.cols(),
                  "alltoallv: rows of " << send.describe() << " into " << recv.describe());
    const int64_t own_first = prefix(send_rows, rank_), own_rows = send_rows[static_cast<size_t>(rank_)];
    const Tensor own = send.slice_rows(own_first, own_rows);
    const bool uniform = std::all_of(recv_rows.begin(), recv_rows.end(), [&](int64_t r) { return r == own_rows; });
    if (uniform && own_rows > 0) {  // every block is the own block (decode's fixed capacity)
      fill_repeated(own, recv);
      counter_.alltoallv(send_rows, recv_rows, row_bytes(send));
      return;
    }
    int64_t at = 0;
    for (int p = 0; p < size_; ++p) {
      const int64_t want = recv_rows[static_cast<size_t>(p)];
      Tensor block = recv.slice_rows(at, want);
      at += want;
      if (own_rows == 0) {
        buffers_->fill_zero(block);
        continue;
      }
      for (int64_t done = 0; done < want; done += own_rows) {  // repeat or cut the own block
        const int64_t n = std::min(own_rows, want - done);
        Tensor piece = block.slice_rows(done, n);
        buffers_->copy(own.slice_rows(0, n), piece);
      }
    }
    counter_.alltoallv(send_rows, recv_rows, row_bytes(send));
  }

  void send(const Tensor& t, int peer, int) override {
    require_peer(peer, "send");
    Tensor scratch = buffers_->sink(t);
    buffers_->copy(t, scratch);
    counter_.add(static_cast<int64_t>(t.nbytes()), 0);
  }

  void recv(Tensor& t, int peer, int) override {
    require_peer(peer, "recv");
    buffers_->copy(buffers_->stand_in(t), t);
    counter_.add(0, static_cast<int64_t>(t.nbytes()));
  }

  void broadcast(Tensor& t, int root) override {
    require_peer(root, "broadcast");
    if (root == rank_) {
      Tensor scratch = buffers_->sink(t);
      buffers_->copy(t, scratch);
    } else {
      buffers_->copy(buffers_->stand_in(t), t);
    }
    counter_.broadcast(root, static_cast<int64_t>(t.nbytes()));
  }

  void barrier() override {}

  void allreduce_host(std::vector<int64_t>& values, bool max_instead_of_sum) override {
    if (!max_instead_of_sum)
      for (int64_t& v : values) v *= size_;
    counter_.allreduce(static_cast<int64_t>(values.size() * sizeof(int64_t)));
  }

  std::vector<int64_t> alltoall_host(const std::vector<int64_t>& counts) override {
    MOETRON_CHECK(counts.size() == static_cast<size_t>(size_),
                  "alltoall_host: " << counts.size() << " counts for a group of " << size_);
    counter_.allgather(static_cast<int64_t>(sizeof(int64_t)));
    return std::vector<int64_t>(counts.size(), counts[static_cast<size_t>(rank_)]);
  }

  void broadcast_host(std::vector<int64_t>& values, int root) override {
    require_peer(root, "broadcast_host");
    counter_.broadcast(root, (static_cast<int64_t>(values.size()) + 1) * static_cast<int64_t>(sizeof(int64_t)));
  }

 private:
  // The first size_ * block.rows() rows of out: size_ copies of block (what every peer would
  // send when all send what this rank sends). Copied once, then what is filled is doubled, so
  // 64 peers cost 7 copies rather than 64.
  void fill_repeated(const Tensor& block, Tensor& out) {
    const int64_t rows = block.rows(), total = rows * size_;
    Tensor first = out.slice_rows(0, rows);
    buffers_->copy(block, first);
    for (int64_t filled = rows; filled < total;) {
      const int64_t n = std::min(filled, total - filled);
      Tensor next = out.slice_rows(filled, n);
      buffers_->copy(out.slice_rows(0, n), next);
      filled += n;
    }
  }
  void require_peer(int peer, const char* op) const {
    MOETRON_CHECK(peer >= 0 && peer < size_,
                  op << ": rank " << peer << " is outside the emulated group of " << size_);
  }
  void check_counts(const std::vector<int64_t>& rows, int64_t available, const char* what) const {
    MOETRON_CHECK(rows.size() == static_cast<size_t>(size_),
                  "alltoallv: " << rows.size() << " " << what << " counts for a group of " << size_);
    int64_t total = 0;
    for (int64_t r : rows) {
      MOETRON_CHECK(r >= 0, "alltoallv: negative " << what << " count " << r);
      total += r;
    }
    MOETRON_CHECK(total <= available,
                  "alltoallv: " << total << " rows to " << what << ", the tensor has " << available);
  }
  static int64_t prefix(const std::vector<int64_t>& rows, int end) {
    int64_t s = 0;
    for (int p = 0; p < end; ++p) s += rows[static_cast<size_t>(p)];
    return s;
  }
  static int64_t row_bytes(const Tensor& t) {
    return std::max<int64_t>(t.cols(), 1) * static_cast<int64_t>(dtype_size(t.dtype));
  }

  int rank_, size_;
  std::shared_ptr<EmulationBuffers> buffers_;
  TrafficCounter counter_;
};

}  // namespace

std::unique_ptr<Communicator> make_emulated_communicator(int rank, int size,
                                                         std::shared_ptr<EmulationBuffers> buffers) {
  return std::make_unique<EmulatedCommunicator>(rank, size, std::move(buffers));
}

}  // namespace moetron
