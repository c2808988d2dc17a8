// Static admission (SchedulerLimits::admission = Admission::Static, `--admission static`): groups
// admitted only when nothing runs, prefilled, then decoded together, so that no step holds both
// a prefill token and a decode. (Every chunked-prefill invariant holds under it too: the random
// workloads of test_chunked_prefill.cpp run both policies.)
#include <gtest/gtest.h>

#include <map>

#include "error_of.hpp"
#include "moetron/engine/scheduler.hpp"
#include "scheduler_test_helpers.hpp"

namespace moetron {
namespace {

SchedulerLimits gang(int64_t block_size) {
  SchedulerLimits limits;
  limits.block_size = block_size;
  limits.admission = Admission::Static;
  return limits;
}

// Runs the scheduler to the end; request i (Pending) arrives before step arrive_at[i]. Fails on a
// step that mixes prefill and decodes. Returns every step.
std::vector<std::vector<Entry>> drive_arriving(Scheduler& sched, std::vector<Sequence>& seqs,
                                               const std::map<int64_t, int64_t>& arrive_at) {
  std::vector<std::vector<Entry>> steps;
  while (!sched.done() && steps.size() < 1000) {
    for (const auto& [index, at] : arrive_at)
      if (seqs[static_cast<size_t>(index)].state == Sequence::State::Pending &&
          static_cast<int64_t>(steps.size()) >= at)
        sched.arrive(&seqs[static_cast<size_t>(index)]);
    const auto step = sched.next_step();
    bool prefill = false, decode = false;
    for (const ScheduledSeq& g : step) (g.prefill ? prefill : decode) = true;
    EXPECT_FALSE(prefill && decode) << "step " << steps.size() << " mixes prefill and decodes";
    steps.push_back(entries(step));
    sched.complete_step(step, std::vector<int32_t>(step.size(), 5), {}, 0, 0.0, {});
  }
  EXPECT_TRUE(sched.done());
  return steps;
}

std::vector<Sequence*> pointers(std::vector<Sequence>& seqs) {
  std::vector<Sequence*> out;
  for (Sequence& s : seqs) out.push_back(&s);
  return out;
}

TEST(StaticAdmission, ParsesTheOptionAndNamesItWhenWrong) {
  EXPECT_EQ(parse_admission("continuous"), Admission::Continuous);
  EXPECT_EQ(parse_admission("static"), Admission::Static);
  EXPECT_EQ(admission_text(Admission::Continuous), "continuous");
  EXPECT_EQ(admission_text(Admission::Static), "static");
  EXPECT_EQ(SchedulerLimits{}.admission, Admission::Continuous);
  for (const char* bad : {"", "Static", "gang", "1"}) {
    const std::string message = test::error_of([&] { parse_admission(bad); });
    EXPECT_NE(message.find("--admission must be continuous or static, got '" + std::string(bad) + "'"),
              std::string::npos)
        << message;
  }
}

// Staggered arrivals and different output lengths, whole prompts and chunks, several batch
// limits: no step mixes, and every request gets all its tokens.
TEST(StaticAdmission, NoStepHoldsBothPrefillAndDecodes) {
  for (const int64_t chunk : {0, 5}) {
    for (const int64_t max_batch : {1, 2, 8}) {
      std::vector<Sequence> seqs;
      std::map<int64_t, int64_t> arrive_at;
      for (int64_t i = 0; i < 7; ++i) {
        seqs.push_back(make_seq(i, 3 + i % 4, 1 + (i * 5) % 7));
        if (i >= 2) {
          seqs.back().state = Sequence::State::Pending;
          arrive_at[i] = 3 * i;
        }
      }
      SchedulerLimits limits = gang(4);
      limits.prefill_chunk = chunk;
      limits.max_batch_seqs = max_batch;
      Scheduler sched(pointers(seqs), 64, limits);
      const auto steps = drive_arriving(sched, seqs, arrive_at);
      for (const Sequence& s : seqs)
        EXPECT_EQ(static_cast<int64_t>(s.output.size()), s.max_new_tokens)
            << "chunk " << chunk << ", max batch " << max_batch << ", request " << s.index;
      for (const auto& step : steps) EXPECT_LE(static_cast<int64_t>(step.size()), max_batch);
    }
  }
}

// Requests 0 and 1 run as a group; 2 and 3 arrive while it decodes and wait until its last
// request (1, with more tokens) has finished; then they are admitted together.
TEST(StaticAdmission, ALateArrivalWaitsForTheGroupThenJoinsTheOthersWaiting) {
  std::vector<Sequence> seqs = {make_seq(0, 4, 2), make_seq(1, 3, 4), make_seq(2, 2, 2), make_seq(3, 5, 1)};
  seqs[2].state = seqs[3].state = Sequence::State::Pending;
  Scheduler sched(pointers(seqs), 64, gang(4));
  const auto steps = drive_arriving(sched, seqs, {{2, 1}, {3, 2}});
  ASSERT_EQ(steps.size(), 6u);
  EXPECT_EQ(steps[0], (std::vector<Entry>{{0, 0, 4, true, true}, {1, 0, 3, true, true}}));
  EXPECT_EQ(steps[1], (std::vector<Entry>{{0, 4, 1, false, true}, {1, 3, 1, false, true}}));
  EXPECT_EQ(steps[2], (std::vector<Entry>{{1, 4, 1, false, true}}));  // 0 is done; 2 has to wait
  EXPECT_EQ(steps[3], (std::vector<Entry>{{1, 5, 1, false, true}}));
  EXPECT_EQ(steps[4], (std::vector<Entry>{{2, 0, 2, true, true}, {3, 0, 5, true, true}}));
  EXPECT_EQ(steps[5], (std::vector<Entry>{{2, 2, 1, false, true}}));
}

// As Scheduler.PreemptsTheLatestAdmittedAndRecomputesIt, under static admission with a third
// request arriving while the group runs: request 1 (admitted last) is preempted when request 0
// needs a block, waits for the group (request 0 alone now) to finish, and is recomputed first in
// the next group, with request 2 beside it.
TEST(StaticAdmission, APreemptedRequestIsRecomputedWithTheNextGroup) {
  std::vector<Sequence> seqs = {make_seq(0, 3, 9), make_seq(1, 3, 9), make_seq(2, 3, 1)};
  seqs[2].state = Sequence::State::Pending;
  Scheduler sched(pointers(seqs), 4, gang(4));
  const auto steps = drive_arriving(sched, seqs, {{2, 1}});
  EXPECT_EQ(seqs[1].preemptions, 1);
  size_t regroup = steps.size();
  for (size_t i = 0; i < steps.size() && regroup == steps.size(); ++i)
    for (const Entry& e : steps[i])
      if (std::get<0>(e) == 1 && std::get<3>(e) && i > 0) regroup = i;
  ASSERT_LT(regroup, steps.size()) << "request 1 was never recomputed";
  // Request 0 had just finished (its last decode, at position 10); request 1 restarts from
  // position 0 (prompt and the 6 tokens it had), request 2 joins the same group.
  EXPECT_EQ(steps[regroup - 1], (std::vector<Entry>{{0, 10, 1, false, true}}));
  EXPECT_EQ(steps[regroup], (std::vector<Entry>{{1, 0, 9, true, true}, {2, 0, 3, true, true}}));
  for (size_t i = 0; i < regroup; ++i)
    for (const Entry& e : steps[i]) EXPECT_NE(std::get<0>(e), 2) << "request 2 ran beside the group at step " << i;
  for (const Sequence& s : seqs) EXPECT_EQ(static_cast<int64_t>(s.output.size()), s.max_new_tokens);
}

}  // namespace
}  // namespace moetron
