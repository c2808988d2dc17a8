// The continuous-batching scheduler, its KV-cache block pool, batch layouts and micro-batches.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>

#include "moetron/core/error.hpp"
#include "moetron/engine/scheduler.hpp"
#include "scheduler_test_helpers.hpp"

namespace moetron {
namespace {

// Runs the scheduler to the end (at most 1000 steps), answering every sequence with token 5;
// `see` is shown each step before it completes. Returns the step sizes.
std::vector<size_t> drive(Scheduler& sched, const std::vector<int64_t>& eos = {},
                          const std::function<void(const std::vector<ScheduledSeq>&)>& see = {}) {
  std::vector<size_t> sizes;
  while (!sched.done() && sizes.size() < 1000) {
    const auto step = sched.next_step();
    EXPECT_FALSE(step.empty()) << "no progress";
    if (step.empty()) break;
    if (see) see(step);
    sizes.push_back(step.size());
    sched.complete_step(step, std::vector<int32_t>(step.size(), 5), {}, 0, 0.0, eos);
  }
  return sizes;
}

TEST(BlockPool, HandsOutLowestFirstAndTakesBack) {
  BlockPool pool(4);
  auto a = pool.take(3);
  EXPECT_EQ(a, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(pool.free_blocks(), 1);
  pool.give_back(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(pool.free_blocks(), 4);
}

TEST(Scheduler, RequestsWaitForCacheAndRunFirstComeFirstServed) {
  // Each request needs (4 + 4) / 4 = 2 blocks; the cache has 4: two run, the third waits.
  std::vector<Sequence> seqs = {make_seq(0, 4, 4), make_seq(1, 4, 4), make_seq(2, 4, 4)};
  std::vector<Sequence*> ptrs = {&seqs[0], &seqs[1], &seqs[2]};
  SchedulerLimits limits;
  limits.block_size = 4;
  Scheduler sched(ptrs, 4, limits);
  auto first = sched.next_step();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].seq, &seqs[0]);
  EXPECT_EQ(first[1].seq, &seqs[1]);
  EXPECT_EQ(sched.waiting(), 1);
  sched.complete_step(first, {5, 5}, {}, 0, 0.0, {});
  const auto sizes = drive(sched);
  for (const Sequence& s : seqs) {
    EXPECT_EQ(s.output.size(), 4u);
    EXPECT_EQ(s.finish_reason, FinishReason::Length);
    EXPECT_TRUE(s.blocks.empty());
  }
  // The third request ran only after the first two finished.
  EXPECT_EQ(sizes.front(), 2u);
  EXPECT_EQ(sizes.back(), 1u);
}

// Two requests of 3 + 9 tokens (3 blocks of 4 each) in a 4-block cache: both start, and when the
// first needs its third block the second, admitted last, is preempted; it is recomputed (prompt
// and its 6 tokens as one prefill) once the first has finished, and both complete.
TEST(Scheduler, PreemptsTheLatestAdmittedAndRecomputesIt) {
  std::vector<Sequence> seqs = {make_seq(0, 3, 9), make_seq(1, 3, 9)};
  SchedulerLimits limits;
  limits.block_size = 4;
  Scheduler sched({&seqs[0], &seqs[1]}, 4, limits);
  std::vector<ScheduledSeq> recompute;
  drive(sched, {}, [&](const std::vector<ScheduledSeq>& step) {
    for (const ScheduledSeq& s : step)
      if (s.prefill && !s.seq->output.empty()) recompute.push_back(s);
  });
  ASSERT_TRUE(sched.done());
  for (const Sequence& s : seqs) {
    EXPECT_EQ(s.output.size(), 9u);
    EXPECT_TRUE(s.blocks.empty());
  }
  EXPECT_EQ(seqs[0].preemptions, 0);
  EXPECT_EQ(seqs[1].preemptions, 1);
  ASSERT_EQ(recompute.size(), 1u);
  EXPECT_EQ(recompute[0].seq, &seqs[1]);
  EXPECT_EQ(recompute[0].count, 3 + 6);  // the prompt and the 6 tokens made before preemption
}

// The same preemption, with a forward that holds 4 tokens a step (max_batch_tokens, above the
// longest prompt): the recompute goes in pieces of at most 4, only the last one yields a token.
TEST(Scheduler, ARecomputeLongerThanTheForwardHoldsGoesInPieces) {
  std::vector<Sequence> seqs = {make_seq(0, 3, 9), make_seq(1, 3, 9)};
  SchedulerLimits limits;
  limits.block_size = 4;
  limits.max_batch_tokens = 4;
  limits.max_step_tokens = 4;
  Scheduler sched({&seqs[0], &seqs[1]}, 4, limits);
  std::vector<ScheduledSeq> pieces;
  int steps = 0;
  drive(sched, {}, [&](const std::vector<ScheduledSeq>& step) {
    ++steps;
    int64_t tokens = 0;
    for (const ScheduledSeq& s : step) {
      tokens += s.count;
      if (s.prefill && !s.seq->output.empty()) pieces.push_back(s);
    }
    EXPECT_LE(tokens, limits.max_step_tokens) << "step " << steps;
  });
  ASSERT_TRUE(sched.done());
  for (const Sequence& s : seqs) EXPECT_EQ(s.output.size(), 9u);
  ASSERT_GE(pieces.size(), 2u);
  int64_t recomputed = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].seq, &seqs[1]);
    EXPECT_EQ(pieces[i].start, recomputed);  // each piece goes on where the last stopped
    EXPECT_EQ(pieces[i].samples, i + 1 == pieces.size());
    recomputed += pieces[i].count;
  }
  // The prompt and what it made before its preemption: more than one step holds.
  EXPECT_GT(recomputed, limits.max_step_tokens);
  EXPECT_EQ(seqs[1].preemptions, 1);
}

// A request is admitted only if the blocks the running ones take next step stay free.
TEST(Scheduler, KeepsTheNextStepsBlocksForRunningRequests) {
  // Prompts of 4 end on a block boundary: each one's first decode needs a new block.
  std::vector<Sequence> seqs = {make_seq(0, 4, 2), make_seq(1, 4, 2), make_seq(2, 4, 2)};
  SchedulerLimits limits;
  limits.block_size = 4;
  Scheduler sched({&seqs[0], &seqs[1], &seqs[2]}, 4, limits);
  const auto first = sched.next_step();  // 1 + 1 kept, 1 + 1 kept: the third would take a kept one
  EXPECT_EQ(first.size(), 2u);
  sched.complete_step(first, {5, 5}, {}, 0, 0.0, {});
  const auto second = sched.next_step();
  EXPECT_EQ(second.size(), 2u);
  for (const Sequence& s : seqs) EXPECT_EQ(s.preemptions, 0);
}

TEST(Scheduler, HonoursBatchLimits) {
  std::vector<Sequence> seqs;
  for (int i = 0; i < 5; ++i) seqs.push_back(make_seq(i, 6, 2));
  std::vector<Sequence*> ptrs;
  for (Sequence& s : seqs) ptrs.push_back(&s);
  SchedulerLimits limits;
  limits.block_size = 4;
  limits.max_batch_seqs = 3;
  limits.max_batch_tokens = 13;  // two 6-token prompts fit, a third does not
  Scheduler sched(ptrs, 100, limits);
  auto step = sched.next_step();
  EXPECT_EQ(step.size(), 2u);
  sched.complete_step(step, {5, 5}, {}, 0, 0.0, {});
  step = sched.next_step();  // 2 decodes + one 6-token prompt = 8 tokens, 3 sequences
  EXPECT_EQ(step.size(), 3u);
}

TEST(Scheduler, StopsAtEosUnlessIgnored) {
  std::vector<Sequence> seqs = {make_seq(0, 2, 8), make_seq(1, 2, 8)};
  seqs[1].ignore_eos = true;
  Scheduler sched({&seqs[0], &seqs[1]}, 16, SchedulerLimits{});
  drive(sched, /*eos=*/{5});
  EXPECT_EQ(seqs[0].output.size(), 1u);
  EXPECT_EQ(seqs[0].finish_reason, FinishReason::Eos);
  EXPECT_EQ(seqs[1].output.size(), 8u);
  EXPECT_EQ(seqs[1].finish_reason, FinishReason::Length);
}

TEST(Scheduler, RefusesARequestTheCacheCanNeverHold) {
  std::vector<Sequence> seqs = {make_seq(7, 30, 10)};
  SchedulerLimits limits;
  limits.block_size = 4;
  try {
    Scheduler sched({&seqs[0]}, 5, limits);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("request 7"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--kv-cache-tokens"), std::string::npos) << e.what();
  }
}

TEST(BatchLayout, MixesPrefillAndDecode) {
  Sequence a = make_seq(0, 3, 4), b = make_seq(1, 5, 4);
  a.blocks = {7, 2};
  b.blocks = {4, 9, 1};
  a.output = {42};  // a decodes position 3 with its last token
  const BatchLayout l = build_batch_layout({{&a, 3, 1}, {&b, 0, 5}}, 4);
  EXPECT_EQ(l.num_tokens, 6);
  EXPECT_EQ(l.token_ids, (std::vector<int32_t>{42, 17, 18, 19, 20, 21}));
  EXPECT_EQ(l.positions, (std::vector<int32_t>{3, 0, 1, 2, 3, 4}));
  // Position p lives in block p / 4 at offset p % 4.
  EXPECT_EQ(l.slot_mapping, (std::vector<int32_t>{7 * 4 + 3, 16, 17, 18, 19, 9 * 4 + 0}));
  EXPECT_EQ(l.query_start, (std::vector<int32_t>{0, 1, 6}));
  EXPECT_EQ(l.kv_lens, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(l.max_blocks_per_seq, 3);
  EXPECT_EQ(l.block_tables, (std::vector<int32_t>{7, 2, 0, 4, 9, 1}));
  EXPECT_EQ(l.logit_rows, (std::vector<int32_t>{0, 5}));
}

TEST(MicroBatches, ContiguousBalancedAndComplete) {
  std::vector<Sequence> seqs;
  for (int i = 0; i < 7; ++i) seqs.push_back(make_seq(i, 1, 1));
  std::vector<ScheduledSeq> step;
  const int64_t counts[] = {8, 1, 1, 1, 9, 1, 3};
  for (int i = 0; i < 7; ++i) step.push_back({&seqs[i], 0, counts[i]});
  for (int64_t parts : {1, 2, 3, 4, 8}) {
    const auto mbs = split_micro_batches(step, parts);
    ASSERT_EQ(static_cast<int64_t>(mbs.size()), parts);
    std::vector<Sequence*> order;
    for (const auto& mb : mbs)
      for (const ScheduledSeq& s : mb) order.push_back(s.seq);
    ASSERT_EQ(order.size(), step.size()) << parts;
    for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], step[i].seq) << parts;
  }
  const auto two = split_micro_batches(step, 2);
  int64_t first = 0, second = 0;
  for (const ScheduledSeq& s : two[0]) first += s.count;
  for (const ScheduledSeq& s : two[1]) second += s.count;
  EXPECT_LE(std::abs(first - second), 9);  // within one sequence of balance
}

}  // namespace
}  // namespace moetron
