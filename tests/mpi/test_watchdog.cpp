// The collective watchdog over real MPI (collective_watchdog.hpp): a wait past its deadline holds
// a roll call and names the rank that did not arrive; waits that complete in time, or with the
// watchdog off, do nothing. The last rank plays the stuck one by sleeping without polling MPI
// (as a stopped process would), then arrives, so every wait here completes in the end: the
// tests replace the job-ending action with one that records the verdict.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "moetron/comm/collective_watchdog.hpp"
#include "moetron/comm/mpi_communicator.hpp"

using namespace moetron;

namespace {

// Short limits and a recording action for one test; the defaults come back at its end.
class ShortWatchdog {
 public:
  ShortWatchdog(double timeout_s, double grace_s) : saved_(watchdog_limits()) {
    WatchdogLimits limits;
    limits.timeout_s = timeout_s;
    limits.grace_s = grace_s;
    set_watchdog_limits(limits);
    set_timeout_action([this](const RollCallVerdict& v) { verdicts.push_back(v); });
  }
  ~ShortWatchdog() {
    set_watchdog_limits(saved_);
    set_timeout_action(nullptr);
  }
  std::vector<RollCallVerdict> verdicts;

 private:
  WatchdogLimits saved_;
};

constexpr double kTimeoutS = 0.3, kGraceS = 0.7;

// Longer than the timeout and the roll call's grace together, so the sleeper cannot answer.
void sleep_past_the_roll_call() {
  std::this_thread::sleep_for(std::chrono::duration<double>(kTimeoutS + kGraceS + 0.7));
}

bool contains(const std::vector<int>& ranks, int rank) {
  return std::find(ranks.begin(), ranks.end(), rank) != ranks.end();
}

TEST(Watchdog, NamesTheRankThatDidNotArriveAtACollective) {
  auto world = make_mpi_communicator(MPI_COMM_WORLD, "world");
  if (world->size() < 2) GTEST_SKIP() << "needs a second rank";
  const int late = world->size() - 1;
  std::vector<int64_t> values = {world->rank()};
  {
    ShortWatchdog watchdog(kTimeoutS, kGraceS);
    if (world->rank() == late) sleep_past_the_roll_call();
    world->allreduce_host(values, /*max_instead_of_sum=*/false);
    // EXPECT, not ASSERT: every rank must reach the barrier below even when a check fails.
    EXPECT_EQ(watchdog.verdicts.size(), world->rank() == late ? 0u : 1u);
    if (world->rank() != late && !watchdog.verdicts.empty()) {
      const RollCallVerdict& v = watchdog.verdicts[0];
      EXPECT_TRUE(contains(v.missing, late)) << v.message;
      EXPECT_TRUE(contains(v.waiting, world->rank())) << v.message;
      const std::string named = "rank " + std::to_string(late) + " did not answer the roll call";
      EXPECT_NE(v.message.find(named), std::string::npos) << v.message;
      EXPECT_NE(v.message.find("did not arrive at allreduce #1 (world) within 0.3 s"), std::string::npos)
          << v.message;
    }
  }
  // The wait went on and completed once the late rank arrived.
  EXPECT_EQ(values[0], int64_t{world->size()} * (world->size() - 1) / 2);
  world->barrier();
}

TEST(Watchdog, NamesTheSilentPeerOfAReceive) {
  auto world = make_mpi_communicator(MPI_COMM_WORLD, "world");
  if (world->size() < 2) GTEST_SKIP() << "needs a second rank";
  Tensor value = host_tensor(DType::I64, {1});
  value.as<int64_t>()[0] = 42;
  {
    ShortWatchdog watchdog(kTimeoutS, kGraceS);
    if (world->rank() == 1) {
      sleep_past_the_roll_call();
      world->send(value, 0, 5);
    } else if (world->rank() == 0) {
      value.as<int64_t>()[0] = 0;
      world->recv(value, 1, 5);
      EXPECT_EQ(value.as<int64_t>()[0], 42);
      EXPECT_EQ(watchdog.verdicts.size(), 1u);
      for (const RollCallVerdict& v : watchdog.verdicts) {
        EXPECT_EQ(v.missing, std::vector<int>({1}));
        EXPECT_NE(v.message.find("rank 1 did not arrive at recv from rank 1 (world)"), std::string::npos)
            << v.message;
      }
    }
  }
  world->barrier();
}

TEST(Watchdog, WaitsThatEndInTimeOrWithTheWatchdogOffHoldNoRollCall) {
  auto world = make_mpi_communicator(MPI_COMM_WORLD, "world");
  std::vector<int64_t> values = {1};
  {
    ShortWatchdog in_time(30, kGraceS);
    world->allreduce_host(values, /*max_instead_of_sum=*/false);
    EXPECT_TRUE(in_time.verdicts.empty());
  }
  {
    ShortWatchdog off(0, kGraceS);  // 0: wait as long as it takes
    if (world->rank() == world->size() - 1) std::this_thread::sleep_for(std::chrono::duration<double>(kTimeoutS * 2));
    world->allreduce_host(values, /*max_instead_of_sum=*/false);
    EXPECT_TRUE(off.verdicts.empty());
  }
  EXPECT_EQ(values[0], int64_t{world->size()} * world->size());
}

}  // namespace
