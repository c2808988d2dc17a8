// Arrivals (engine/arrivals.hpp), the scheduler's queue of arrived requests, and which replica
// serves a request that follows another.
#include <gtest/gtest.h>

#include <cmath>

#include "moetron/engine/arrivals.hpp"
#include "moetron/engine/run_session.hpp"

namespace moetron {
namespace {

std::vector<Sequence> sequences(const std::vector<double>& arrivals, const std::vector<int64_t>& after) {
  std::vector<Sequence> out;
  for (size_t i = 0; i < arrivals.size(); ++i) {
    Sequence s;
    s.index = static_cast<int64_t>(i);
    s.prompt = {1, 2, 3};
    s.max_new_tokens = 2;
    s.arrival_s = arrivals[i];
    s.after = after[i];
    out.push_back(s);
  }
  return out;
}

TEST(Arrivals, TimedOnesComeDueInTimeOrderFollowersWhenTheirLeaderFinishes) {
  // 0: at the start; 1: at 0.5; 2: at 0.2; 3: after 0; 4: after 3.
  std::vector<Sequence> seqs = sequences({0, 0.5, 0.2, 0, 0}, {-1, -1, -1, 0, 3});
  Arrivals arrivals(seqs);
  EXPECT_EQ(seqs[0].state, Sequence::State::Waiting);
  for (size_t i = 1; i < 5; ++i) EXPECT_EQ(seqs[i].state, Sequence::State::Pending) << i;
  EXPECT_EQ(arrivals.pending(), 4);
  EXPECT_DOUBLE_EQ(arrivals.next_arrival_s(), 0.2);
  EXPECT_TRUE(arrivals.due(0.1).empty());
  EXPECT_EQ(arrivals.due(0.6), (std::vector<Sequence*>{&seqs[2], &seqs[1]}));
  EXPECT_TRUE(std::isinf(arrivals.next_arrival_s()));
  EXPECT_TRUE(arrivals.followers_of(seqs[1]).empty());
  EXPECT_EQ(arrivals.followers_of(seqs[0]), std::vector<Sequence*>{&seqs[3]});
  EXPECT_EQ(arrivals.followers_of(seqs[0]), std::vector<Sequence*>{});  // handed out once
  EXPECT_EQ(arrivals.followers_of(seqs[3]), std::vector<Sequence*>{&seqs[4]});
  EXPECT_EQ(arrivals.pending(), 0);
}

TEST(Arrivals, TheSchedulerAdmitsOnlyWhatArrivedInArrivalOrder) {
  std::vector<Sequence> seqs = sequences({0, 0.3, 0.1}, {-1, -1, -1});
  Arrivals arrivals(seqs);
  std::vector<Sequence*> all = {&seqs[0], &seqs[1], &seqs[2]};
  Scheduler sched(all, 64, SchedulerLimits{});
  std::vector<ScheduledSeq> step = sched.next_step();
  ASSERT_EQ(step.size(), 1u);
  EXPECT_EQ(step[0].seq, &seqs[0]);
  EXPECT_EQ(sched.waiting(), 0);
  EXPECT_FALSE(sched.done());
  sched.complete_step(step, {5}, {}, 0, /*now_s=*/0.05, {});
  for (Sequence* s : arrivals.due(0.35)) sched.arrive(s);  // 2 (at 0.1) before 1 (at 0.3)
  step = sched.next_step();
  ASSERT_EQ(step.size(), 3u);
  EXPECT_EQ(step[1].seq, &seqs[2]);
  EXPECT_EQ(step[2].seq, &seqs[1]);
  sched.complete_step(step, {5, 5, 5}, {}, 0, /*now_s=*/0.4, {});
  // Token times count from each request's arrival.
  EXPECT_DOUBLE_EQ(seqs[0].token_times_s[1], 0.4);
  EXPECT_NEAR(seqs[2].token_times_s[0], 0.3, 1e-12);
  EXPECT_NEAR(seqs[1].token_times_s[0], 0.1, 1e-12);
}

TEST(Arrivals, AFollowerIsServedByTheReplicaOfTheRequestItFollows) {
  std::vector<RequestSpec> specs(6);
  for (RequestSpec& r : specs) r.prompt_tokens = {1};
  // Without `after`: round robin, request i on replica i % 2.
  EXPECT_EQ(replica_of_requests(specs, 2), (std::vector<int>{0, 1, 0, 1, 0, 1}));
  // A closed loop of 3 on 2 replicas: 3 follows 0, 4 follows 1, 5 follows 2.
  specs[3].after = 0;
  specs[4].after = 1;
  specs[5].after = 2;
  EXPECT_EQ(replica_of_requests(specs, 2), (std::vector<int>{0, 1, 0, 0, 1, 0}));
  const std::vector<Sequence> second = requests_for_replica(specs, 2, 1, RequestDefaults{});
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[1].index, 4);
  EXPECT_EQ(second[1].after, 1);
}

}  // namespace
}  // namespace moetron
