// Every Communicator call, on random data, against what it must produce. Each rank can rebuild
// any peer's data from the peer's rank (seeded generators), so the expectation needs no MPI.
// The same tests run over the world, over a split (every other rank: a communicator whose
// ranks differ from the world's) and over the group of one.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <random>
#include <string>

#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"

using namespace moetron;

namespace {

// Integer-valued floats in [-100, 100]: sums over up to 8 ranks are exact in float32.
std::vector<float> random_values(int rank, size_t n, uint32_t salt) {
  std::mt19937 gen(rank * 7919u + salt);
  std::uniform_int_distribution<int> dist(-100, 100);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(gen));
  return v;
}

// A host tensor of `dtype` holding `values` (converted).
Tensor tensor_of(DType dtype, std::vector<int64_t> shape, const std::vector<float>& values) {
  Tensor t = host_tensor(dtype, std::move(shape));
  EXPECT_EQ(t.numel(), static_cast<int64_t>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::F32:
        t.as<float>()[i] = values[i];
        break;
      case DType::BF16:
        t.as<uint16_t>()[i] = float_to_bf16(values[i]);
        break;
      case DType::F16:
        t.as<uint16_t>()[i] = float_to_f16(values[i]);
        break;
      case DType::I32:
        t.as<int32_t>()[i] = static_cast<int32_t>(values[i]);
        break;
      case DType::I64:
        t.as<int64_t>()[i] = static_cast<int64_t>(values[i]);
        break;
    }
  }
  return t;
}

double element(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::I32:
      return t.as<int32_t>()[i];
    case DType::I64:
      return static_cast<double>(t.as<int64_t>()[i]);
    default:
      return load_as_float(t.data, t.dtype, i);
  }
}

void expect_tensor_eq(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.numel(), want.numel()) << what;
  int bad = 0;
  for (int64_t i = 0; i < got.numel() && bad < 5; ++i)
    if (element(got, i) != element(want, i))
      ADD_FAILURE() << what << ": element " << i << " is " << element(got, i) << ", want "
                    << element(want, i) << " (" << ++bad << ")";
}

const DType kAllTypes[] = {DType::F32, DType::BF16, DType::F16, DType::I32, DType::I64};

enum class Group { World, EveryOther, Self };

class CommunicatorTest : public ::testing::TestWithParam<Group> {
 protected:
  void SetUp() override {
    switch (GetParam()) {
      case Group::World:
        mpi_ = make_mpi_communicator(MPI_COMM_WORLD);
        break;
      case Group::EveryOther: {
        int world_rank = 0;
        check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank), "MPI_Comm_rank");
        MPI_Comm half;
        // Reversed key: group rank order is the opposite of world order.
        check_mpi(MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, -world_rank, &half),
                  "MPI_Comm_split");
        mpi_ = std::make_unique<MpiCommunicator>(half);
        break;
      }
      case Group::Self:
        self_ = make_self_communicator();
        break;
    }
  }
  Communicator& comm() { return mpi_ ? *mpi_ : *self_; }
  int rank() { return comm().rank(); }
  int size() { return comm().size(); }
  // Checks the traffic counters of an MPI group (the group of one has none).
  void expect_bytes(int64_t sent, int64_t received) {
    if (!mpi_) return;
    EXPECT_EQ(mpi_->bytes_sent(), sent);
    EXPECT_EQ(mpi_->bytes_received(), received);
  }

  std::unique_ptr<MpiCommunicator> mpi_;
  std::unique_ptr<Communicator> self_;
};

TEST_P(CommunicatorTest, AllreduceSumsEveryDtype) {
  const int64_t n = 1001;
  int64_t expected_bytes = 0;
  for (DType dtype : kAllTypes) {
    std::vector<float> sum(n, 0.0f);
    for (int r = 0; r < size(); ++r) {
      std::vector<float> v = random_values(r, n, 1);
      for (int64_t i = 0; i < n; ++i) sum[i] += v[i];
    }
    Tensor t = tensor_of(dtype, {7, 143}, random_values(rank(), n, 1));
    comm().allreduce_sum(t);
    // 16-bit floats are summed in float32 and rounded once, so the expectation is the exact
    // sum converted to the dtype.
    expect_tensor_eq(t, tensor_of(dtype, {7, 143}, sum), dtype_name(dtype));
    expected_bytes += 2 * (size() - 1) * static_cast<int64_t>(t.nbytes()) / size();
  }
  expect_bytes(expected_bytes, expected_bytes);
}

TEST_P(CommunicatorTest, AllgatherConcatenatesInRankOrder) {
  for (DType dtype : kAllTypes) {
    std::vector<float> all;
    for (int r = 0; r < size(); ++r) {
      std::vector<float> v = random_values(r, 15, 2);
      all.insert(all.end(), v.begin(), v.end());
    }
    Tensor in = tensor_of(dtype, {3, 5}, random_values(rank(), 15, 2));
    Tensor out = host_tensor(dtype, {3 * size(), 5});
    comm().allgather(in, out);
    expect_tensor_eq(out, tensor_of(dtype, {3 * size(), 5}, all), dtype_name(dtype));
  }
  Tensor in = host_tensor(DType::F32, {3, 5});
  Tensor wrong = host_tensor(DType::F32, {3 * size() + 1, 5});
  EXPECT_THROW(comm().allgather(in, wrong), Error);
}

// Rows sent from `src` to `dst` in the all-to-all test: uneven, and zero for some pairs.
int64_t rows_between(int src, int dst) { return (src + 2 * dst) % 3; }

// The block src sends to dst, rebuildable by both.
std::vector<float> block(int src, int dst, int64_t cols) {
  return random_values(src * 64 + dst, rows_between(src, dst) * cols, 3);
}

TEST_P(CommunicatorTest, AlltoallvMovesUnevenBlocksIncludingEmptyOnes) {
  const int64_t cols = 6;
  int64_t sent_bytes = 0, received_bytes = 0;
  for (DType dtype : kAllTypes) {
    std::vector<int64_t> send_rows(size()), recv_rows(size());
    std::vector<float> send_values, expected;
    for (int p = 0; p < size(); ++p) {
      send_rows[p] = rows_between(rank(), p);
      recv_rows[p] = rows_between(p, rank());
      std::vector<float> out = block(rank(), p, cols), in = block(p, rank(), cols);
      send_values.insert(send_values.end(), out.begin(), out.end());
      expected.insert(expected.end(), in.begin(), in.end());
    }
    const int64_t send_total = static_cast<int64_t>(send_values.size()) / cols;
    const int64_t recv_total = static_cast<int64_t>(expected.size()) / cols;
    // One spare row after each buffer's rows: the call must neither send nor overwrite it.
    send_values.resize((send_total + 1) * cols, 55.0f);
    expected.resize((recv_total + 1) * cols, -7.0f);
    Tensor send = tensor_of(dtype, {send_total + 1, cols}, send_values);
    Tensor recv =
        tensor_of(dtype, {recv_total + 1, cols}, std::vector<float>(expected.size(), -7.0f));
    comm().alltoallv(send, send_rows, recv, recv_rows);
    expect_tensor_eq(recv, tensor_of(dtype, {recv_total + 1, cols}, expected), dtype_name(dtype));
    const int64_t row_bytes = cols * static_cast<int64_t>(dtype_size(dtype));
    sent_bytes += (send_total - send_rows[rank()]) * row_bytes;
    received_bytes += (recv_total - recv_rows[rank()]) * row_bytes;
  }
  expect_bytes(sent_bytes, received_bytes);
}

TEST_P(CommunicatorTest, AlltoallvRefusesCountsThatDoNotFit) {
  Tensor send = host_tensor(DType::F32, {2, 4});
  Tensor recv = host_tensor(DType::F32, {2, 4});
  std::vector<int64_t> too_many(size(), 0), fine(size(), 0);
  too_many[0] = 3;
  EXPECT_THROW(comm().alltoallv(send, too_many, recv, fine), Error);
  EXPECT_THROW(comm().alltoallv(send, std::vector<int64_t>(size() + 1), recv, fine), Error);
  Tensor narrow = host_tensor(DType::F32, {2, 3});
  EXPECT_THROW(comm().alltoallv(send, fine, narrow, fine), Error);
}

TEST_P(CommunicatorTest, SendAndReceiveAroundARing) {
  const int next = (rank() + 1) % size(), prev = (rank() + size() - 1) % size();
  for (DType dtype : kAllTypes) {
    Tensor out = tensor_of(dtype, {4, 3}, random_values(rank(), 12, 4));
    Tensor out_tagged = tensor_of(dtype, {2}, random_values(rank(), 2, 5));
    Tensor in = host_tensor(dtype, {4, 3}), in_tagged = host_tensor(dtype, {2});
    // Two messages with different tags, received in the opposite order (tags must match them
    // up). Small messages: MPI sends them eagerly, so sending first cannot deadlock.
    comm().send(out, next, 1);
    comm().send(out_tagged, next, 2);
    comm().recv(in_tagged, prev, 2);
    comm().recv(in, prev, 1);
    expect_tensor_eq(in, tensor_of(dtype, {4, 3}, random_values(prev, 12, 4)), dtype_name(dtype));
    expect_tensor_eq(in_tagged, tensor_of(dtype, {2}, random_values(prev, 2, 5)),
                     dtype_name(dtype));
  }
  comm().barrier();
  Tensor t = host_tensor(DType::F32, {2});
  EXPECT_THROW(comm().send(t, size(), 0), Error);
  EXPECT_THROW(comm().recv(t, -1, 0), Error);
}

TEST_P(CommunicatorTest, ReceivingAShorterMessageIsAnError) {
  const int next = (rank() + 1) % size(), prev = (rank() + size() - 1) % size();
  Tensor small = host_tensor(DType::I32, {3});
  Tensor big = host_tensor(DType::I32, {5});
  comm().send(small, next, 9);
  try {
    comm().recv(big, prev, 9);
    ADD_FAILURE() << "a 3-element message received into 5 elements did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 5 elements"), std::string::npos) << e.what();
  }
}

TEST_P(CommunicatorTest, BroadcastCopiesTheRootsTensor) {
  const int root = size() - 1;
  for (DType dtype : kAllTypes) {
    Tensor t = tensor_of(dtype, {50}, random_values(rank(), 50, 6));
    comm().broadcast(t, root);
    expect_tensor_eq(t, tensor_of(dtype, {50}, random_values(root, 50, 6)), dtype_name(dtype));
  }
  const int64_t bytes = 50 * (4 + 2 + 2 + 4 + 8);
  expect_bytes(rank() == root ? (size() - 1) * bytes : 0, rank() == root ? 0 : bytes);
  Tensor t = host_tensor(DType::F32, {2});
  EXPECT_THROW(comm().broadcast(t, size()), Error);
}

TEST_P(CommunicatorTest, HostAllreduceSumsAndMaxes) {
  std::vector<int64_t> values = {rank(), 10 * rank() - 3, 1};
  std::vector<int64_t> maxes = values;
  comm().allreduce_host(values, false);
  comm().allreduce_host(maxes, true);
  const int64_t n = size(), rank_sum = n * (n - 1) / 2;
  EXPECT_EQ(values, (std::vector<int64_t>{rank_sum, 10 * rank_sum - 3 * n, n}));
  EXPECT_EQ(maxes, (std::vector<int64_t>{n - 1, 10 * (n - 1) - 3, 1}));
}

TEST_P(CommunicatorTest, HostAlltoallExchangesOneCountPerPeer) {
  std::vector<int64_t> counts(size());
  for (int p = 0; p < size(); ++p) counts[p] = 100 * rank() + p;
  std::vector<int64_t> got = comm().alltoall_host(counts);
  ASSERT_EQ(got.size(), static_cast<size_t>(size()));
  for (int p = 0; p < size(); ++p) EXPECT_EQ(got[p], 100 * p + rank());
  EXPECT_THROW(comm().alltoall_host(std::vector<int64_t>(size() + 1)), Error);
}

TEST_P(CommunicatorTest, HostBroadcastSendsValuesOfAnyLength) {
  const int root = size() / 2;
  std::vector<int64_t> values;
  if (rank() == root) values = {5, -1, 1LL << 40, 7, 0};
  comm().broadcast_host(values, root);
  EXPECT_EQ(values, (std::vector<int64_t>{5, -1, 1LL << 40, 7, 0}));
}

TEST_P(CommunicatorTest, RefusesDeviceTensors) {
  float fake[8] = {};
  Tensor in, out;
  in.data = out.data = fake;  // never read: the device check comes first
  in.device = out.device = Device::Cuda;
  in.shape = {1};
  out.shape = {size()};
  EXPECT_THROW(comm().allgather(in, out), Error);
}

INSTANTIATE_TEST_SUITE_P(Groups, CommunicatorTest,
                         ::testing::Values(Group::World, Group::EveryOther, Group::Self),
                         [](const ::testing::TestParamInfo<Group>& info) {
                           switch (info.param) {
                             case Group::World:
                               return std::string("World");
                             case Group::EveryOther:
                               return std::string("EveryOther");
                             case Group::Self:
                               return std::string("Self");
                           }
                           return std::string("?");
                         });

TEST(MpiErrors, ReturnCodesBecomeErrorsWithMpisMessage) {
  try {
    check_mpi(MPI_ERR_TRUNCATE, "MPI_Recv");
    ADD_FAILURE() << "no Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind("MPI_Recv failed: ", 0), 0u) << msg;
    EXPECT_GT(msg.size(), std::string("MPI_Recv failed: ").size()) << msg;
  }
  // A real failing call: a message longer than the receive buffer (MPI_ERR_TRUNCATE).
  auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  const int next = (comm->rank() + 1) % comm->size();
  const int prev = (comm->rank() + comm->size() - 1) % comm->size();
  Tensor big = host_tensor(DType::F32, {8}), small = host_tensor(DType::F32, {2});
  comm->send(big, next, 3);
  try {
    comm->recv(small, prev, 3);
    ADD_FAILURE() << "receiving 8 floats into 2 did not throw";
  } catch (const Error& e) {
    // Reported where the receive completes, naming the operation.
    EXPECT_NE(std::string(e.what()).find("recv from rank " + std::to_string(prev) + " (group)) failed"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
