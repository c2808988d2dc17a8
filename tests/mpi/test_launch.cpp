// Launch rules on every rank of a real MPI job: the GPU binding gathered over the world (with
// the MOETRON_TEST_GPU_UUIDS hook standing in for CUDA), and the plan decided once by rank 0.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/staged_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"
#include "moetron/engine/device_setup.hpp"
#include "moetron/parallel/plan_agreement.hpp"
#include "../common/memory_budget.hpp"
#include "../common/moe_config.hpp"
#include "../common/mpi_world.hpp"

using namespace moetron;

namespace {

using test_mpi::world_rank;
using test_mpi::world_size;

// Sets an environment variable for the life of a scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) { setenv(name, value.c_str(), 1); }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

// Every rank's binding, as the others saw it (all ranks of this job are on one host).
std::vector<DeviceBinding> bind_with_hook(const std::string& hook) {
  ScopedEnv env("MOETRON_TEST_GPU_UUIDS", hook);
  std::vector<RankDevices> ranks;
  DeviceBinding me = bind_rank_devices(MPI_COMM_WORLD, "cpu", &ranks);
  EXPECT_EQ(ranks.size(), static_cast<size_t>(world_size()));
  std::vector<DeviceBinding> all = bind_devices(ranks);
  EXPECT_EQ(all[static_cast<size_t>(world_rank())].uuid, me.uuid);
  EXPECT_EQ(me.ranks_on_node, world_size());
  EXPECT_EQ(ranks[static_cast<size_t>(world_rank())].host, host_name());
  return all;
}

}  // namespace

TEST(Launch, GatheredRecordsHaveDistinctNodeLocalRanks) {
  std::vector<RankDevices> ranks;
  bind_rank_devices(MPI_COMM_WORLD, "cpu", &ranks);
  std::vector<bool> seen(ranks.size(), false);
  for (const RankDevices& r : ranks) {
    ASSERT_GE(r.node_local_rank, 0);
    ASSERT_LT(r.node_local_rank, world_size());
    EXPECT_FALSE(seen[static_cast<size_t>(r.node_local_rank)]) << r.node_local_rank << " twice";
    seen[static_cast<size_t>(r.node_local_rank)] = true;
    EXPECT_TRUE(r.uuids.empty());  // the cpu backend asks CUDA nothing
  }
}

// Slurm's --gpus-per-task=1: each rank sees one device, a different one.
TEST(Launch, OneDistinctGpuPerRankIsNotShared) {
  std::string hook;
  for (int r = 0; r < world_size(); ++r) hook += (r ? ";GPU-" : "GPU-") + std::to_string(r);
  for (const DeviceBinding& b : bind_with_hook(hook)) {
    EXPECT_EQ(b.device, 0);
    EXPECT_EQ(b.ranks_sharing_device, 1);
    EXPECT_EQ(b.transport, "nccl");
  }
}

// Every rank sees the same single device.
TEST(Launch, OneGpuForAllRanksIsShared) {
  const std::vector<DeviceBinding> all = bind_with_hook("GPU-only");
  for (const DeviceBinding& b : all) {
    EXPECT_EQ(b.uuid, "GPU-only");
    EXPECT_EQ(b.ranks_sharing_device, world_size());
    EXPECT_EQ(b.transport, world_size() > 1 ? "mpi" : "nccl");
  }
}

// Every rank sees two devices: ranks alternate over them.
TEST(Launch, TwoVisibleGpusAreDealtByNodeLocalRank) {
  std::vector<RankDevices> ranks;
  {
    ScopedEnv env("MOETRON_TEST_GPU_UUIDS", "GPU-x,GPU-y");
    bind_rank_devices(MPI_COMM_WORLD, "cpu", &ranks);
  }
  const std::vector<DeviceBinding> all = bind_with_hook("GPU-x,GPU-y");
  for (size_t r = 0; r < all.size(); ++r) {
    EXPECT_EQ(all[r].device, ranks[r].node_local_rank % 2);
    EXPECT_EQ(all[r].ranks_sharing_device, all[r].device == 0 ? (world_size() + 1) / 2 : world_size() / 2);
  }
  EXPECT_EQ(all[0].transport, world_size() > 2 ? "mpi" : "nccl");
}

// Ranks taking turns on a device, as the predictions of a run price them: the ranks bound to a
// GPU; on the CPU, the node's ranks times each one's threads over the cores they share (the
// union of their affinities, gathered here); MOETRON_CPU_THREADS, when set, is each one's count.
TEST(Launch, RanksPerDeviceFollowTheBinding) {
  const std::vector<DeviceBinding> shared = bind_with_hook("GPU-only");
  const DeviceBinding& gpu = shared[static_cast<size_t>(world_rank())];
  EXPECT_EQ(ranks_per_device("cuda", gpu), world_size());

  const DeviceBinding cpu = bind_rank_devices(MPI_COMM_WORLD, "cpu");
  ASSERT_GE(cpu.cores_on_node, 1);
  EXPECT_LE(cpu.cores_on_node, cpu_node_cores());
  const int threads = cpu_threads_of_rank(cpu);
  EXPECT_EQ(threads, cpu_threads_for_rank(cpu_usable_cores(), cpu.cores_on_node, world_size()));
  EXPECT_DOUBLE_EQ(ranks_per_device("cpu", cpu),
                   std::max(1.0, static_cast<double>(world_size()) * threads / cpu.cores_on_node));
  {
    ScopedEnv env("MOETRON_CPU_THREADS", "3");
    EXPECT_EQ(cpu_threads_of_rank(cpu), 3);
    EXPECT_DOUBLE_EQ(ranks_per_device("cpu", cpu), std::max(1.0, 3.0 * world_size() / cpu.cores_on_node));
  }
  {
    ScopedEnv env("MOETRON_CPU_THREADS", "0");
    EXPECT_THROW(cpu_threads_of_rank(cpu), Error);
  }
}

TEST(Launch, MemoryHookGivesEachRankItsEntry) {
  ScopedEnv env("MOETRON_TEST_MEMORY_PER_RANK", "1000;2000");
  DeviceBinding b;
  EXPECT_EQ(memory_per_rank(0, "cpu", b), world_rank() % 2 == 0 ? 1000 : 2000);
  EXPECT_EQ(memory_per_rank(77, "cpu", b), 77);  // --memory-per-rank wins
}

namespace {

ModelConfig plan_config() { return moe_config({64, 64, 8, 8, 8, 8, 64, 8, 2}); }

// Each rank's plan, as all ranks see it.
std::vector<Plan> everyones(const Plan& mine) {
  auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  constexpr size_t kFields = 5;
  std::vector<int64_t> v(kFields * static_cast<size_t>(world_size()), 0);
  const size_t at = kFields * static_cast<size_t>(world_rank());
  v[at] = mine.pp, v[at + 1] = mine.tp, v[at + 2] = mine.dp, v[at + 3] = mine.ep, v[at + 4] = mine.mb;
  comm->allreduce_host(v, false);
  std::vector<Plan> plans;
  for (size_t r = 0; r < static_cast<size_t>(world_size()); ++r) {
    const int64_t* f = &v[kFields * r];
    plans.push_back(Plan{static_cast<int>(f[0]), static_cast<int>(f[1]), static_cast<int>(f[2]),
                         static_cast<int>(f[3]), static_cast<int>(f[4])});
  }
  return plans;
}

}  // namespace

// Rank 0 has room for any plan; the others only for the most sharded ones. Deciding alone, they
// would disagree; agreed, every rank runs the plan that fits the smallest memory.
TEST(Launch, EveryRankRunsRankZerosPlanFittingTheSmallestMemory) {
  const ModelConfig c = plan_config();
  const int n = world_size();
  const std::vector<Plan> plans = enumerate_plans(c, n);
  if (plans.size() < 2) GTEST_SKIP() << "one plan only on " << n << " ranks: nothing to disagree on";
  int64_t least = INT64_MAX;
  for (const Plan& p : plans) {
    const MemoryBudget unknown = cpu_test_memory(0);
    least = std::min(least, largest_memory_need(p, c, unknown.storage, unknown.run).need.total());
  }
  const int64_t roomy = int64_t{1} << 40;
  const int64_t mine = world_rank() == 0 ? roomy : least;
  auto world = make_mpi_communicator(MPI_COMM_WORLD);
  const Plan agreed = agree_plan(*world, "auto", c, cpu_test_memory(mine), n);
  const Plan expected = resolve_plan("auto", c, n, cpu_test_memory(least), n);
  EXPECT_NE(resolve_plan("auto", c, n, cpu_test_memory(roomy), n), expected) << "the ranks would not disagree";
  for (const Plan& p : everyones(agreed)) EXPECT_EQ(p, expected) << p.to_string() << " vs " << expected.to_string();
}

// Whatever the others were asked, rank 0's --plan is the one run.
TEST(Launch, OthersTakeRankZerosExplicitPlan) {
  const ModelConfig c = plan_config();
  const int n = world_size();
  auto world = make_mpi_communicator(MPI_COMM_WORLD);
  const std::string text = world_rank() == 0 ? "pp=" + std::to_string(n) : "auto";
  const Plan agreed = agree_plan(*world, text, c, MemoryBudget{}, n);
  for (const Plan& p : everyones(agreed)) EXPECT_EQ(p, (Plan{n, 1, 1, 1}));
}

// A pipeline's micro-batch count (mb=) travels with the plan.
TEST(Launch, EveryRankGetsThePlansMicroBatches) {
  const int n = world_size();
  if (n < 2) GTEST_SKIP() << "a pipeline needs two ranks";
  const ModelConfig c = plan_config();
  auto world = make_mpi_communicator(MPI_COMM_WORLD);
  const std::string text = world_rank() == 0 ? "pp=" + std::to_string(n) + ",mb=3" : "auto";
  const Plan agreed = agree_plan(*world, text, c, MemoryBudget{}, n);
  for (const Plan& p : everyones(agreed)) EXPECT_EQ(p, (Plan{n, 1, 1, 1, 3})) << p.to_string();
  EXPECT_EQ(agreed.micro_batch_count(), 3);
}

// Rank 0 cannot resolve its plan: every rank throws rank 0's message, and none waits.
TEST(Launch, RankZerosErrorReachesEveryRank) {
  const ModelConfig c = plan_config();
  auto world = make_mpi_communicator(MPI_COMM_WORLD);
  const std::string text = world_rank() == 0 ? "tp=999" : "auto";
  std::string expected;
  try {
    resolve_plan("tp=999", c, world_size(), MemoryBudget{}, world_size());
  } catch (const Error& e) {
    expected = e.what();
  }
  ASSERT_FALSE(expected.empty());
  try {
    agree_plan(*world, text, c, MemoryBudget{}, world_size());
    ADD_FAILURE() << "rank " << world_rank() << " got a plan";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), expected);
  }
}

// The host-staged transport reports what its MPI group moved for it; only a transport that can
// be recorded accepts replay corrections.
TEST(Launch, StagedTransportCountsItsTraffic) {
  std::shared_ptr<MpiCommunicator> mpi = make_mpi_communicator(MPI_COMM_WORLD);
  std::unique_ptr<Ops> ops = make_cpu_ops();
  std::unique_ptr<Communicator> staged = make_staged_communicator(mpi, *ops);
  Tensor t = host_tensor(DType::F32, {4, 25});
  for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = static_cast<float>(i);
  staged->allreduce_sum(t);
  const int64_t n = world_size(), moved = 2 * (n - 1) * static_cast<int64_t>(t.nbytes()) / n;
  EXPECT_EQ(staged->traffic().sent, moved);
  EXPECT_EQ(staged->traffic().received, moved);
  EXPECT_EQ(mpi->traffic().sent, moved);
  EXPECT_THROW(staged->adjust_traffic({1, 0}), Error);
  staged->adjust_traffic({0, 0});  // nothing recorded: nothing to correct
  EXPECT_EQ(make_self_communicator()->traffic().sent, 0);
}
