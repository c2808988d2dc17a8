// Rank emulation's pieces: the option checks, the emulated communicator's stand-ins for each
// collective (on host tensors), and the groups an emulated rank gets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/engine/rank_emulation.hpp"
#include "../common/moe_config.hpp"

using namespace moetron;

namespace {

std::string problem(bool rank_given, bool world_given, int rank, int world, const std::string& plan, int mpi = 1) {
  return emulation_problem(rank_given, world_given, Emulation{rank, world}, plan, mpi);
}

Tensor rows_of(std::vector<float>& v, int64_t cols) {
  Tensor t;
  t.data = v.data();
  t.dtype = DType::F32;
  t.shape = {static_cast<int64_t>(v.size()) / cols, cols};
  return t;
}

struct Emulated {
  std::unique_ptr<Ops> ops = make_cpu_ops();
  std::shared_ptr<EmulationBuffers> buffers = std::make_shared<EmulationBuffers>(*ops, 0);
};

}  // namespace

TEST(RankEmulationOptions, EachMistakeIsNamed) {
  EXPECT_EQ(problem(false, false, -1, 0, "auto"), "");
  EXPECT_EQ(problem(true, true, 3, 8, "pp=2,tp=2,dp=2,ep=4"), "");
  EXPECT_NE(problem(true, false, 0, 0, "tp=2").find("--emulate-rank needs --emulate-world"), std::string::npos);
  EXPECT_NE(problem(false, true, -1, 2, "tp=2").find("--emulate-world needs --emulate-rank"), std::string::npos);
  EXPECT_NE(problem(true, true, 8, 8, "tp=8").find("--emulate-rank 8 is outside [0, 8)"), std::string::npos);
  EXPECT_NE(problem(true, true, -1, 8, "tp=8").find("outside [0, 8)"), std::string::npos);
  EXPECT_NE(problem(true, true, 0, 0, "tp=8").find("--emulate-world must be at least 1"), std::string::npos);
  EXPECT_NE(problem(true, true, 0, 4, "auto").find("explicit --plan"), std::string::npos);
  EXPECT_NE(problem(true, true, 0, 4, "tp=2,dp=4").find("--plan pp=1,tp=2,dp=4,ep=1 has 8 ranks"), std::string::npos);
  EXPECT_NE(problem(true, true, 0, 4, "tp=4", 2).find("this job has 2 MPI ranks"), std::string::npos);
}

TEST(EmulatedCommunicator, PeersSendWhatThisRankSendsItself) {
  Emulated e;
  auto comm = make_emulated_communicator(1, 3, e.buffers);
  // Rank 1 sends 1 row to peer 0, 2 rows to itself, 0 to peer 2 (rows of width 2).
  std::vector<float> send = {9, 9, 1, 2, 3, 4};
  const std::vector<int64_t> send_rows = {1, 2, 0};
  const std::vector<int64_t> recv_rows = comm->alltoall_host(send_rows);
  EXPECT_EQ(recv_rows, (std::vector<int64_t>{2, 2, 2}));
  std::vector<float> recv(12, -1);
  Tensor s = rows_of(send, 2), r = rows_of(recv, 2);
  comm->alltoallv(s, send_rows, r, recv_rows);
  EXPECT_EQ(recv, (std::vector<float>{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}));
  // The way back: blocks of other sizes repeat or cut the own block.
  std::vector<float> back(6, -1);
  Tensor b = rows_of(back, 2);
  comm->alltoallv(r, recv_rows, b, send_rows);
  EXPECT_EQ(back, (std::vector<float>{1, 2, 1, 2, 3, 4}));
  // Traffic: what the real rank would move (its own block stays).
  const Traffic t = comm->traffic();
  EXPECT_EQ(t.sent, (1 + 0 + 2 + 2) * 8 + 8 * 2);      // two all-to-alls and the counts' exchange
  EXPECT_EQ(t.received, (2 + 2 + 1 + 0) * 8 + 8 * 2);
}

TEST(EmulatedCommunicator, EqualBlocksForAnOddGroupAreAllTheOwnBlock) {
  Emulated e;
  auto comm = make_emulated_communicator(3, 5, e.buffers);  // filled by doubling: 1, 2, 4, then 1 block
  std::vector<float> send(10);
  for (size_t i = 0; i < send.size(); ++i) send[i] = static_cast<float>(i);
  std::vector<float> recv(10, -1);
  Tensor s = rows_of(send, 1), r = rows_of(recv, 1);
  comm->alltoallv(s, {2, 2, 2, 2, 2}, r, {2, 2, 2, 2, 2});
  EXPECT_EQ(recv, (std::vector<float>{6, 7, 6, 7, 6, 7, 6, 7, 6, 7}));
}

TEST(EmulatedCommunicator, NothingSentToItselfReceivesZeros) {
  Emulated e;
  auto comm = make_emulated_communicator(0, 2, e.buffers);
  std::vector<float> send = {5, 6}, recv(4, -1);
  Tensor s = rows_of(send, 2), r = rows_of(recv, 2);
  comm->alltoallv(s, {0, 1}, r, {1, 1});
  EXPECT_EQ(recv, (std::vector<float>{0, 0, 0, 0}));
}

TEST(EmulatedCommunicator, HostCollectivesAnswerAsIfEveryRankHeldTheseValues) {
  Emulated e;
  auto comm = make_emulated_communicator(2, 4, e.buffers);
  std::vector<int64_t> v = {3, -1};
  comm->allreduce_host(v, /*max_instead_of_sum=*/true);
  EXPECT_EQ(v, (std::vector<int64_t>{3, -1}));
  comm->allreduce_host(v, /*max_instead_of_sum=*/false);
  EXPECT_EQ(v, (std::vector<int64_t>{12, -4}));
  comm->broadcast_host(v, 0);
  EXPECT_EQ(v, (std::vector<int64_t>{12, -4}));
}

TEST(EmulatedCommunicator, GatherCopiesAndReceiveFillsUnitVarianceStandIns) {
  Emulated e;
  auto comm = make_emulated_communicator(0, 3, e.buffers);
  std::vector<float> in = {1, 2}, out(6, 0);
  Tensor i = rows_of(in, 2), o = rows_of(out, 2);
  comm->allgather(i, o);
  EXPECT_EQ(out, (std::vector<float>{1, 2, 1, 2, 1, 2}));
  std::vector<float> sum = {7, 8};
  Tensor st = rows_of(sum, 2);
  comm->allreduce_sum(st);  // touches the bytes, keeps this rank's part
  EXPECT_EQ(sum, (std::vector<float>{7, 8}));

  std::vector<float> got(4096, 0);
  Tensor g = rows_of(got, 64);
  comm->recv(g, 1, 1);
  double mean = 0, var = 0;
  for (float x : got) mean += x / got.size();
  for (float x : got) var += (x - mean) * (x - mean) / got.size();
  EXPECT_NEAR(mean, 0.0, 0.05);
  EXPECT_NEAR(var, 1.0, 0.1);
  std::vector<float> again(4096, 0);
  Tensor a = rows_of(again, 64);
  comm->recv(a, 1, 1);
  EXPECT_EQ(again, got);  // deterministic
  EXPECT_THROW(comm->recv(a, 3, 1), Error);
}

TEST(EmulatedGroups, EachGroupHasThePlansSizeAndThisRanksPlaceInIt) {
  const ModelConfig config = moe_config({64, 32, 8, 8, 2, 4, 16, 8, 2});
  const Plan plan = parse_plan("pp=2,tp=2,dp=2,ep=4");
  Emulated e;
  for (int rank = 0; rank < plan.world_size(); ++rank) {
    const ParallelGroups g = emulated_groups(plan, config, Emulation{rank, 8}, e.buffers);
    const GroupMembers m = group_members(plan, rank);
    const auto place = [rank](const std::vector<int>& members) {
      return static_cast<int>(std::find(members.begin(), members.end(), rank) - members.begin());
    };
    EXPECT_EQ(g.world->size(), 8);
    EXPECT_EQ(g.world->rank(), rank);
    EXPECT_EQ(g.world->transport(), "emulated");
    EXPECT_EQ(g.tp->size(), 2);
    EXPECT_EQ(g.tp->rank(), place(m.tp));
    EXPECT_EQ(g.stage->rank(), place(m.stage));
    EXPECT_EQ(g.replica->rank(), place(m.replica));
    EXPECT_EQ(g.pipeline->rank(), place(m.pipeline));
    EXPECT_EQ(g.layout.coords, coords_of(plan, rank));
  }
  EXPECT_THROW(emulated_groups(plan, config, Emulation{0, 4}, e.buffers), Error);
}

TEST(RankEmulationOptions, EmulatedPeersModesAreNamed) {
  EXPECT_EQ(parse_emulated_peers("rotated"), EmulatedPeers::Rotated);
  EXPECT_EQ(parse_emulated_peers("same"), EmulatedPeers::Same);
  EXPECT_EQ(parse_emulated_peers("spread"), EmulatedPeers::Spread);
  EXPECT_EQ(Emulation{}.peers, EmulatedPeers::Rotated);  // the default
  for (const EmulatedPeers p : {EmulatedPeers::Rotated, EmulatedPeers::Same, EmulatedPeers::Spread})
    EXPECT_EQ(parse_emulated_peers(emulated_peers_name(p)), p);
  try {
    parse_emulated_peers("shuffled");
    ADD_FAILURE() << "an unknown mode was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--emulate-peers: unknown mode 'shuffled'"), std::string::npos) << e.what();
  }
}

// Peer d replicas away routes expert e as e moved d places within its EP set: each set keeps its
// load, spread over the set's experts. 12 experts in sets of 3 (an awkward size), distance 0..5.
TEST(EmulatedPeerTable, MovesEachExpertWithinItsSet) {
  for (int64_t distance = 0; distance < 6; ++distance) {
    const std::vector<int32_t> t = emulated_peer_table({}, 12, 3, distance);
    ASSERT_EQ(t.size(), 24u);
    std::vector<int> hits(12, 0);
    for (int64_t e = 0; e < 12; ++e) {
      EXPECT_EQ(t[static_cast<size_t>(2 * e)], 1);
      const int32_t to = t[static_cast<size_t>(2 * e + 1)];
      EXPECT_EQ(to / 3, e / 3) << "expert " << e << " left its set at distance " << distance;
      EXPECT_EQ(to, e / 3 * 3 + (e % 3 + distance) % 3);
      ++hits[static_cast<size_t>(to)];
    }
    for (int h : hits) EXPECT_EQ(h, 1);  // a permutation
  }
  // One expert a set: nothing moves. A base table (redundant experts: 2 copies, cols 3) moves
  // whole rows: expert e takes the copies of the expert it is moved to.
  EXPECT_EQ(emulated_peer_table({}, 4, 1, 3), (std::vector<int32_t>{1, 0, 1, 1, 1, 2, 1, 3}));
  const std::vector<int32_t> base = {1, 0, -1, 2, 1, 5, 1, 2, -1, 1, 3, -1};  // 4 experts, sets of 2
  EXPECT_EQ(emulated_peer_table(base, 4, 2, 1), (std::vector<int32_t>{2, 1, 5, 1, 0, -1, 1, 3, -1, 1, 2, -1}));
  EXPECT_THROW(emulated_peer_table({}, 12, 5, 1), Error);       // sets must divide the experts
  EXPECT_THROW(emulated_peer_table({}, 12, 5, 1, true), Error);  // the same across sets
  EXPECT_THROW(emulated_peer_table({1, 0}, 4, 2, 0), Error);    // a table of another size
}

// Spread: peer d also moves each pick d sets on, so with one expert a set (where rotating within
// the set moves nothing) expert x receives peer d's picks of expert x - d: over dp = experts
// peers, every pick of this rank's tokens once. 12 experts in 4 sets of 3: still a permutation,
// each pick moved d sets and d places within the set; distance 0 moves nothing.
TEST(EmulatedPeerTable, SpreadAlsoMovesEachExpertAcrossSets) {
  for (int64_t distance = 0; distance < 9; ++distance) {
    const std::vector<int32_t> t = emulated_peer_table({}, 12, 3, distance, true);
    std::vector<int> hits(12, 0);
    for (int64_t e = 0; e < 12; ++e) {
      const int32_t to = t[static_cast<size_t>(2 * e + 1)];
      EXPECT_EQ(to / 3, (e / 3 + distance) % 4) << "expert " << e << ", distance " << distance;
      EXPECT_EQ(to % 3, (e % 3 + distance) % 3);
      ++hits[static_cast<size_t>(to)];
    }
    for (int h : hits) EXPECT_EQ(h, 1);
  }
  std::vector<int> reached(4, 0);  // one expert a set: expert 2's sources over 4 peers
  for (int64_t d = 0; d < 4; ++d) {
    const std::vector<int32_t> t = emulated_peer_table({}, 4, 1, d, true);
    for (int64_t e = 0; e < 4; ++e)
      if (t[static_cast<size_t>(2 * e + 1)] == 2) ++reached[static_cast<size_t>(e)];
  }
  EXPECT_EQ(reached, (std::vector<int>{1, 1, 1, 1}));
  EXPECT_EQ(emulated_peer_table({}, 4, 1, 3, false), emulated_peer_table({}, 4, 1, 0, true));  // within: nothing moves
}

// What CPU pack_from_peers makes of rotated tables: peer p's block holds the own tokens' picks in
// the destination's set, each moved by p's distance, in token order.
TEST(EmulatedPeerTable, PeersPackTheirMovedPicks) {
  auto ops = make_cpu_ops();
  const int64_t experts = 8, set_size = 4, tokens = 3, k = 2, capacity = tokens * k;
  const std::vector<int32_t> ids = {0, 5, 3, 4, 1, 2};  // tokens' picks
  std::vector<int32_t> stacked, senders;
  for (int64_t d = 0; d < 2; ++d) {
    const std::vector<int32_t> t = emulated_peer_table({}, experts, set_size, d);
    stacked.insert(stacked.end(), t.begin(), t.end());
    senders.insert(senders.end(), {static_cast<int32_t>(d), 0});
  }
  Tensor id_t = ops->alloc(DType::I32, {tokens, k}), tables = ops->alloc(DType::I32, {2, experts, 2});
  Tensor send_t = ops->alloc(DType::I32, {2, 2});
  ops->copy_from_host(id_t, ids.data());
  ops->copy_from_host(tables, stacked.data());
  ops->copy_from_host(send_t, senders.data());
  Tensor rows = ops->alloc(DType::I32, {2 * capacity}), out = ops->alloc(DType::I32, {2 * capacity, 1});
  ops->pack_from_peers(id_t, tables, send_t, 1, set_size, 1, /*destination=*/0, capacity, rows, out);
  std::vector<int32_t> r(static_cast<size_t>(2 * capacity)), x(r.size());
  ops->to_host(rows, r.data());
  ops->to_host(out, x.data());
  // Set 0 = experts 0..3. Peer 0 (itself): picks 0 (token 0), 3 (token 1), 1, 2 (token 2).
  EXPECT_EQ(std::vector<int32_t>(x.begin(), x.begin() + 4), (std::vector<int32_t>{0, 3, 1, 2}));
  EXPECT_EQ(std::vector<int32_t>(r.begin(), r.begin() + 4), (std::vector<int32_t>{0, 1, 2, 2}));
  // Peer 1: the same picks moved one place within the set: 1, 0, 2, 3; expert 5 stays in set 1.
  EXPECT_EQ(std::vector<int32_t>(x.begin() + capacity, x.begin() + capacity + 4), (std::vector<int32_t>{1, 0, 2, 3}));
  EXPECT_EQ(x[static_cast<size_t>(capacity + 4)], -1);  // padding past the count
}
