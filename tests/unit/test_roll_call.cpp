// The watchdog's verdict after a roll call (roll_call.hpp): who did not arrive, and the one
// line the job ends with. The MPI side (asking, answering, the deadline) is tests/mpi/test_watchdog.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "moetron/comm/roll_call.hpp"

namespace moetron {
namespace {

constexpr int64_t kTp = 7, kWorld = 3;

WaitSite allreduce(int64_t seq, int64_t group = kTp, const char* name = "tp group") {
  return make_wait_site("allreduce", name, group, seq, -1);
}

TEST(RollCall, AStoppedRankIsNamedAndTheOthersWereWaiting) {
  const std::map<int, WaitSite> answers = {{0, allreduce(12)}, {3, allreduce(12)}};
  const RollCallVerdict v = judge_roll_call(allreduce(12), 1, {0, 1, 2, 3}, answers, 5);
  EXPECT_EQ(v.missing, std::vector<int>({2}));
  EXPECT_EQ(v.waiting, std::vector<int>({0, 1, 3}));
  EXPECT_EQ(v.message,
            "rank 2 did not arrive at allreduce #12 (tp group) within 5 s (--collective-timeout): rank 2 did not "
            "answer the roll call (stopped, wedged or busy); ranks 0,1,3 were waiting; ending the job");
}

TEST(RollCall, ARankStillInAnEarlierOrOtherCollectiveDidNotArrive) {
  const std::map<int, WaitSite> answers = {{1, allreduce(11)}, {2, allreduce(40, kWorld, "world")}};
  const RollCallVerdict v = judge_roll_call(allreduce(12), 0, {0, 1, 2}, answers, 0.5);
  EXPECT_EQ(v.missing, std::vector<int>({1, 2}));
  EXPECT_EQ(v.waiting, std::vector<int>({0}));
  EXPECT_EQ(v.message,
            "ranks 1,2 did not arrive at allreduce #12 (tp group) within 0.5 s (--collective-timeout): rank 1 is "
            "waiting in allreduce #11 (tp group), rank 2 is waiting in allreduce #40 (world); rank 0 was waiting; "
            "ending the job");
}

TEST(RollCall, ARankThatPassedTheCollectiveArrived) {
  // A broadcast's root may complete and move on before the others receive.
  const std::map<int, WaitSite> answers = {{0, allreduce(13)}};
  const RollCallVerdict v = judge_roll_call(allreduce(12), 1, {0, 1}, answers, 5);
  EXPECT_TRUE(v.missing.empty());
  EXPECT_EQ(v.message, "allreduce #12 (tp group) did not complete within 5 s (--collective-timeout) although "
                       "ranks 0,1 were all waiting in it; ending the job");
}

TEST(RollCall, ASendOrReceiveWaitsOnlyForItsPeer) {
  const WaitSite recv = make_wait_site("recv", "pipeline group", kTp, 4, 2);
  EXPECT_EQ(describe(recv), "recv from rank 2 (pipeline group)");
  EXPECT_EQ(expected_ranks(recv, 3, {0, 1, 2, 3}), std::vector<int>({2}));
  // The peer busy in a collective has not arrived; rank 0, silent, is not asked about.
  std::map<int, WaitSite> answers = {{2, allreduce(9, kTp, "pipeline group")}};
  RollCallVerdict v = judge_roll_call(recv, 3, {0, 1, 2, 3}, answers, 5);
  EXPECT_EQ(v.missing, std::vector<int>({2}));
  EXPECT_EQ(v.waiting, std::vector<int>({3}));
  // The peer sending to this rank on the same group has.
  answers[2] = make_wait_site("send", "pipeline group", kTp, 9, 3);
  EXPECT_EQ(describe(answers[2]), "send to rank 3 (pipeline group)");
  v = judge_roll_call(recv, 3, {0, 1, 2, 3}, answers, 5);
  EXPECT_TRUE(v.missing.empty());
  // Sending to someone else is not the matching send.
  answers[2] = make_wait_site("send", "pipeline group", kTp, 9, 1);
  EXPECT_EQ(judge_roll_call(recv, 3, {0, 1, 2, 3}, answers, 5).missing, std::vector<int>({2}));
}

TEST(RollCall, GroupsWithoutAnIdAreMatchedByName) {
  const auto setup = [](const char* step) {
    return make_wait_site(step, "setup exchange", WaitSite::kUntrackedGroup, 0, -1);
  };
  EXPECT_EQ(describe(setup("gather lengths")), "gather lengths (setup exchange)");
  const std::map<int, WaitSite> answers = {{0, setup("gather lengths")}, {1, setup("gather strings")}};
  const RollCallVerdict v = judge_roll_call(setup("gather lengths"), 2, {0, 1, 2}, answers, 1);
  EXPECT_EQ(v.missing, std::vector<int>({1}));
  EXPECT_EQ(v.waiting, std::vector<int>({0, 2}));
}

TEST(RollCall, LongNamesAreCutAndTerminated) {
  const WaitSite s = make_wait_site("an operation name far too long", std::string(100, 'g'), kTp, 1, -1);
  EXPECT_EQ(std::strlen(s.op), sizeof s.op - 1);
  EXPECT_EQ(std::strlen(s.group), sizeof s.group - 1);
}

}  // namespace
}  // namespace moetron
