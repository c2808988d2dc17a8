// bind_devices: which GPU each rank takes and whether ranks share GPUs, decided from UUIDs over
// the world, for the layouts launchers produce (Slurm's one device per task, mpirun's every
// device per rank, oversubscribed GPUs, several nodes).
#include <gtest/gtest.h>

#include "error_of.hpp"
#include "moetron/backend/cpu_ops.hpp"
#include "moetron/engine/device_binding.hpp"

using namespace moetron;
using moetron::test::error_of;

namespace {

RankDevices rank_on(const std::string& host, int local_rank, std::vector<std::string> uuids) {
  RankDevices r;
  r.host = host;
  r.node_local_rank = local_rank;
  r.uuids = std::move(uuids);
  return r;
}

std::vector<std::string> bound_uuids(const std::vector<DeviceBinding>& b) {
  std::vector<std::string> out;
  for (const DeviceBinding& x : b) out.push_back(x.uuid);
  return out;
}

std::vector<int> bound_devices(const std::vector<DeviceBinding>& b) {
  std::vector<int> out;
  for (const DeviceBinding& x : b) out.push_back(x.device);
  return out;
}

std::vector<int> sharing(const std::vector<DeviceBinding>& b) {
  std::vector<int> out;
  for (const DeviceBinding& x : b) out.push_back(x.ranks_sharing_device);
  return out;
}

const std::vector<std::string> kFour = {"GPU-a", "GPU-b", "GPU-c", "GPU-d"};

}  // namespace

TEST(DeviceBinding, OneRankOneGpu) {
  const auto b = bind_devices({rank_on("n0", 0, {"GPU-a"})});
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].device, 0);
  EXPECT_EQ(b[0].uuid, "GPU-a");
  EXPECT_EQ(b[0].ranks_sharing_device, 1);
  EXPECT_EQ(b[0].ranks_on_node, 1);
  EXPECT_FALSE(b[0].node_shares_gpu);
  EXPECT_EQ(b[0].transport, "nccl");
}

// srun --gpus-per-task=1: each rank sees one device, its own. The old rule (ranks on the node >
// visible devices) called this sharing.
TEST(DeviceBinding, SlurmOneDistinctGpuPerTask) {
  std::vector<RankDevices> ranks;
  for (int r = 0; r < 4; ++r) ranks.push_back(rank_on("n0", r, {kFour[r]}));
  const auto b = bind_devices(ranks);
  EXPECT_EQ(bound_devices(b), (std::vector<int>{0, 0, 0, 0}));
  EXPECT_EQ(bound_uuids(b), kFour);
  EXPECT_EQ(sharing(b), (std::vector<int>{1, 1, 1, 1}));
  for (const DeviceBinding& x : b) {
    EXPECT_FALSE(x.node_shares_gpu);
    EXPECT_FALSE(x.world_shares_gpu);
    EXPECT_EQ(x.transport, "nccl");
    EXPECT_EQ(x.ranks_on_node, 4);
  }
}

TEST(DeviceBinding, EveryRankSeesEveryGpu) {
  std::vector<RankDevices> ranks;
  for (int r = 0; r < 4; ++r) ranks.push_back(rank_on("n0", r, kFour));
  const auto b = bind_devices(ranks);
  EXPECT_EQ(bound_devices(b), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(bound_uuids(b), kFour);
  EXPECT_EQ(sharing(b), (std::vector<int>{1, 1, 1, 1}));
  EXPECT_EQ(b[0].transport, "nccl");
}

TEST(DeviceBinding, EightRanksShareFourGpus) {
  std::vector<RankDevices> ranks;
  for (int r = 0; r < 8; ++r) ranks.push_back(rank_on("n0", r, kFour));
  const auto b = bind_devices(ranks);
  EXPECT_EQ(bound_devices(b), (std::vector<int>{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(sharing(b), (std::vector<int>(8, 2)));
  for (const DeviceBinding& x : b) {
    EXPECT_TRUE(x.node_shares_gpu);
    EXPECT_TRUE(x.world_shares_gpu);
    EXPECT_EQ(x.transport, "mpi");
  }
}

// Each rank sees one device, but the launcher gave two ranks the same one.
TEST(DeviceBinding, SameSingleGpuSeenByTwoRanksIsShared) {
  const auto b = bind_devices({rank_on("n0", 0, {"GPU-a"}), rank_on("n0", 1, {"GPU-a"}),
                               rank_on("n0", 2, {"GPU-b"})});
  EXPECT_EQ(sharing(b), (std::vector<int>{2, 2, 1}));
  EXPECT_TRUE(b[2].node_shares_gpu);
  EXPECT_EQ(b[2].transport, "mpi");
}

// Node n0 gives each rank a GPU; n1 puts two ranks on one: n1 shares, and since every rank must
// use the same transport, the whole world falls back to MPI.
TEST(DeviceBinding, TwoNodesOneSharing) {
  const auto b = bind_devices({rank_on("n0", 0, {"GPU-a"}), rank_on("n0", 1, {"GPU-b"}),
                               rank_on("n1", 0, {"GPU-c"}), rank_on("n1", 1, {"GPU-c"})});
  EXPECT_EQ(sharing(b), (std::vector<int>{1, 1, 2, 2}));
  EXPECT_FALSE(b[0].node_shares_gpu);
  EXPECT_FALSE(b[1].node_shares_gpu);
  EXPECT_TRUE(b[2].node_shares_gpu);
  for (const DeviceBinding& x : b) {
    EXPECT_TRUE(x.world_shares_gpu);
    EXPECT_EQ(x.transport, "mpi");
    EXPECT_EQ(x.ranks_on_node, 2);
  }
}

TEST(DeviceBinding, TwoNodesEachRankItsOwnGpu) {
  std::vector<RankDevices> ranks;
  for (int r = 0; r < 8; ++r)
    ranks.push_back(rank_on(r < 4 ? "n0" : "n1", r % 4, {(r < 4 ? "n0-" : "n1-") + kFour[r % 4]}));
  const auto b = bind_devices(ranks);
  EXPECT_EQ(sharing(b), (std::vector<int>(8, 1)));
  EXPECT_EQ(b[7].uuid, "n1-GPU-d");
  EXPECT_EQ(b[0].transport, "nccl");
}

// CUDA_VISIBLE_DEVICES=0,1 for two ranks and 2,3 for the other two: a rank picks among the
// devices it sees by its position among the ranks seeing the same ones.
TEST(DeviceBinding, RanksSeeingTwoOfFourGpus) {
  const auto b = bind_devices({rank_on("n0", 0, {"GPU-a", "GPU-b"}), rank_on("n0", 1, {"GPU-a", "GPU-b"}),
                               rank_on("n0", 2, {"GPU-c", "GPU-d"}), rank_on("n0", 3, {"GPU-c", "GPU-d"})});
  EXPECT_EQ(bound_devices(b), (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(bound_uuids(b), kFour);
  EXPECT_EQ(b[0].transport, "nccl");
}

// The node-local rank alone would send ranks 0 and 2 (both seeing a,b) to device 0.
TEST(DeviceBinding, PositionCountsOnlyRanksSeeingTheSameDevices) {
  const auto b = bind_devices({rank_on("n0", 0, {"GPU-a", "GPU-b"}), rank_on("n0", 1, {"GPU-c"}),
                               rank_on("n0", 2, {"GPU-a", "GPU-b"})});
  EXPECT_EQ(bound_uuids(b), (std::vector<std::string>{"GPU-a", "GPU-c", "GPU-b"}));
  EXPECT_EQ(sharing(b), (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(b[0].transport, "nccl");
}

// The world's order need not follow node-local ranks (e.g. round-robin placement).
TEST(DeviceBinding, WorldOrderDiffersFromNodeOrder) {
  const auto b = bind_devices({rank_on("n0", 1, {"GPU-a", "GPU-b"}), rank_on("n0", 0, {"GPU-a", "GPU-b"})});
  EXPECT_EQ(bound_uuids(b), (std::vector<std::string>{"GPU-b", "GPU-a"}));
}

TEST(DeviceBinding, NoGpusAnywhere) {
  const auto b = bind_devices({rank_on("n0", 0, {}), rank_on("n0", 1, {})});
  for (const DeviceBinding& x : b) {
    EXPECT_EQ(x.device, -1);
    EXPECT_EQ(x.uuid, "");
    EXPECT_EQ(x.transport, "");
    EXPECT_FALSE(x.world_shares_gpu);
    EXPECT_EQ(x.ranks_on_node, 2);
  }
}

TEST(DeviceBinding, RankWithoutGpuAmongRanksWithIsAnError) {
  const std::string msg = error_of([] {
    bind_devices({rank_on("n0", 0, {"GPU-a"}), rank_on("n1", 0, {})});
  });
  EXPECT_NE(msg.find("rank 1 on host n1 sees no GPU"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CUDA_VISIBLE_DEVICES"), std::string::npos) << msg;
}

TEST(DeviceBinding, DescribeSaysOneLinePerNode) {
  const std::vector<RankDevices> ranks = {rank_on("n0", 0, {"GPU-a"}), rank_on("n0", 1, {"GPU-b"}),
                                          rank_on("n1", 0, {"GPU-c"}), rank_on("n1", 1, {"GPU-c"})};
  const std::vector<std::string> lines = describe_bindings(ranks, bind_devices(ranks));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "node n0: ranks 0,1, 2 GPUs (GPU-a: rank 0; GPU-b: rank 1), one GPU per rank: device transport "
            "mpi through host memory (ranks share GPUs on another node)");
  EXPECT_EQ(lines[1],
            "node n1: ranks 2,3, 1 GPU (GPU-c: ranks 2,3), ranks share GPUs: device transport mpi through "
            "host memory (NCCL refuses two ranks on one GPU)");
}

TEST(DeviceBinding, DescribeNcclAndNoGpu) {
  std::vector<RankDevices> ranks;
  for (int r = 0; r < 4; ++r) ranks.push_back(rank_on("n0", r, {kFour[r]}));
  EXPECT_EQ(describe_bindings(ranks, bind_devices(ranks)),
            (std::vector<std::string>{"node n0: ranks 0-3, 4 GPUs (GPU-a: rank 0; GPU-b: rank 1; GPU-c: rank 2; "
                                      "GPU-d: rank 3), one GPU per rank: device transport nccl"}));
  const std::vector<RankDevices> cpu = {rank_on("n0", 0, {})};
  EXPECT_EQ(describe_bindings(cpu, bind_devices(cpu)), (std::vector<std::string>{"node n0: rank 0, no GPU: transport mpi"}));
}

// The cores a node's ranks run on together: the union of their affinities (mpirun binding each
// rank to a core, taskset over all of them, srun --cpus-per-task), per node; unknown (0) when a
// rank of the node did not say.
TEST(DeviceBinding, CoresOnNodeAreTheUnionOfTheRanksAffinities) {
  std::vector<RankDevices> ranks = {rank_on("n0", 0, {}), rank_on("n0", 1, {}), rank_on("n1", 0, {}),
                                    rank_on("n1", 1, {}), rank_on("n2", 0, {})};
  ranks[0].cpus = {0, 1};  // n0: each rank bound to two cores of its own
  ranks[1].cpus = {2, 3};
  ranks[2].cpus = {0};     // n1: both on one core (taskset -c 0)
  ranks[3].cpus = {0};
  const auto b = bind_devices(ranks);  // n2's rank said nothing
  EXPECT_EQ(b[0].cores_on_node, 4);
  EXPECT_EQ(b[1].cores_on_node, 4);
  EXPECT_EQ(b[2].cores_on_node, 1);
  EXPECT_EQ(b[3].cores_on_node, 1);
  EXPECT_EQ(b[4].cores_on_node, 0);
  EXPECT_EQ(b[2].ranks_on_node, 2);
}

TEST(DeviceBinding, AffinityListsThisProcesssCores) {
  const std::vector<int> cpus = cpu_affinity_cores();
  ASSERT_FALSE(cpus.empty());
  for (size_t i = 1; i < cpus.size(); ++i) EXPECT_LT(cpus[i - 1], cpus[i]);
}
