// Chunked prefill (SchedulerLimits::prefill_chunk > 0): prompts cut into chunks that follow the
// step's decodes, first come first served, with the KV-cache blocks of each chunk's tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <tuple>

#include "moetron/engine/scheduler.hpp"
#include "scheduler_test_helpers.hpp"

namespace moetron {
namespace {

SchedulerLimits chunked(int64_t chunk, int64_t block_size) {
  SchedulerLimits limits;
  limits.block_size = block_size;
  limits.prefill_chunk = chunk;
  return limits;
}

int64_t blocks_for(int64_t tokens, int64_t block_size) { return (tokens + block_size - 1) / block_size; }

// What every step must satisfy, whatever the requests: the decodes come first; the prefill tokens
// stay within the chunk and the step within max_batch_tokens; a chunk continues where the
// sequence's cache ends and samples exactly when it ends the prefill, and only the step's last
// entry may leave prefill for later; every running sequence holds the blocks of the tokens it
// will have cached and no block is held twice. Under static admission no step holds both a
// prefill chunk and a decode.
void expect_well_formed(const std::vector<ScheduledSeq>& step, const std::vector<Sequence>& seqs,
                        const SchedulerLimits& limits, int64_t num_blocks) {
  int64_t prefill_tokens = 0, tokens = 0;
  bool seen_prefill = false;
  for (size_t i = 0; i < step.size(); ++i) {
    const ScheduledSeq& g = step[i];
    tokens += g.count;
    EXPECT_EQ(g.start, g.seq->cached_tokens) << "request " << g.seq->index;
    if (!g.prefill) {
      EXPECT_FALSE(seen_prefill) << "a decode after a prefill chunk";
      EXPECT_EQ(g.count, 1);
      EXPECT_TRUE(g.samples);
      continue;
    }
    seen_prefill = true;
    prefill_tokens += g.count;
    EXPECT_GT(g.count, 0);
    EXPECT_EQ(g.samples, g.start + g.count == g.seq->prefill_end) << "request " << g.seq->index;
    if (!g.samples) {
      EXPECT_EQ(i + 1, step.size()) << "an unfinished chunk before another entry";
    }
  }
  EXPECT_LE(prefill_tokens, limits.prefill_chunk);
  if (limits.admission == Admission::Static && seen_prefill) {
    EXPECT_TRUE(step.front().prefill) << "static admission: a step with prefill and decodes";
  }
  if (seen_prefill) {
    EXPECT_LE(tokens, limits.max_batch_tokens);
  }
  EXPECT_LE(static_cast<int64_t>(step.size()), limits.max_batch_seqs);

  std::set<int32_t> held;
  size_t held_count = 0;
  for (const Sequence& s : seqs) {
    if (s.state != Sequence::State::Running) {
      EXPECT_TRUE(s.blocks.empty()) << "request " << s.index << " holds blocks but is not running";
      continue;
    }
    auto mine = std::find_if(step.begin(), step.end(), [&](const ScheduledSeq& g) { return g.seq == &s; });
    const int64_t cached_after = mine == step.end() ? s.cached_tokens : mine->start + mine->count;
    EXPECT_EQ(static_cast<int64_t>(s.blocks.size()), blocks_for(cached_after, limits.block_size))
        << "request " << s.index;
    held.insert(s.blocks.begin(), s.blocks.end());
    held_count += s.blocks.size();
  }
  EXPECT_EQ(held.size(), held_count) << "a block held twice";
  EXPECT_LE(static_cast<int64_t>(held_count), num_blocks);
}

// Runs the scheduler to the end (checking every step), answering each sampling entry with token 5.
std::vector<std::vector<Entry>> drive_checked(Scheduler& sched, const std::vector<Sequence>& seqs,
                                              int64_t num_blocks) {
  std::vector<std::vector<Entry>> steps;
  while (!sched.done() && steps.size() < 10000) {
    const auto step = sched.next_step();
    EXPECT_FALSE(step.empty()) << "no progress at step " << steps.size();
    if (step.empty()) break;
    expect_well_formed(step, seqs, sched.limits(), num_blocks);
    steps.push_back(entries(step));
    sched.complete_step(step, std::vector<int32_t>(step.size(), 5), {}, 0, 0.0, {});
  }
  EXPECT_TRUE(sched.done());
  return steps;
}

TEST(ChunkedPrefill, SplitsAPromptAndSamplesOnlyAfterTheLastChunk) {
  std::vector<Sequence> seqs = {make_seq(0, 20, 3)};
  Scheduler sched({&seqs[0]}, 64, chunked(7, 16));
  const auto first = sched.next_step();
  sched.complete_step(first, {99}, {}, 0, 0.5, {});
  EXPECT_TRUE(seqs[0].output.empty()) << "a chunk with more to come produced a token";
  EXPECT_TRUE(seqs[0].token_times_s.empty());
  EXPECT_EQ(seqs[0].state, Sequence::State::Running);
  EXPECT_EQ(sched.running(), 1);
  EXPECT_EQ(sched.waiting(), 0);
  const auto rest = drive_checked(sched, seqs, 64);
  EXPECT_EQ(entries(first), (std::vector<Entry>{{0, 0, 7, true, false}}));
  ASSERT_EQ(rest.size(), 4u);
  EXPECT_EQ(rest[0], (std::vector<Entry>{{0, 7, 7, true, false}}));
  EXPECT_EQ(rest[1], (std::vector<Entry>{{0, 14, 6, true, true}}));
  EXPECT_EQ(rest[2], (std::vector<Entry>{{0, 20, 1, false, true}}));
  EXPECT_EQ(rest[3], (std::vector<Entry>{{0, 21, 1, false, true}}));
  EXPECT_EQ(seqs[0].output.size(), 3u);
}

// The head's next chunk first; what the budget leaves goes to the next in the queue; the running
// requests decode ahead of every chunk.
TEST(ChunkedPrefill, DecodesFirstThenChunksInArrivalOrder) {
  std::vector<Sequence> seqs = {make_seq(0, 10, 4), make_seq(1, 10, 4), make_seq(2, 3, 1)};
  Scheduler sched({&seqs[0], &seqs[1], &seqs[2]}, 100, chunked(8, 4));
  const auto steps = drive_checked(sched, seqs, 100);
  ASSERT_GE(steps.size(), 4u);
  EXPECT_EQ(steps[0], (std::vector<Entry>{{0, 0, 8, true, false}}));
  EXPECT_EQ(steps[1], (std::vector<Entry>{{0, 8, 2, true, true}, {1, 0, 6, true, false}}));
  EXPECT_EQ(steps[2],
            (std::vector<Entry>{{0, 10, 1, false, true}, {1, 6, 4, true, true}, {2, 0, 3, true, true}}));
  EXPECT_EQ(steps[3], (std::vector<Entry>{{0, 11, 1, false, true}, {1, 10, 1, false, true}}));
  for (const Sequence& s : seqs) EXPECT_EQ(static_cast<int64_t>(s.output.size()), s.max_new_tokens);
}

TEST(ChunkedPrefill, MaxBatchTokensAndSeqsStillBind) {
  std::vector<Sequence> seqs = {make_seq(0, 12, 2), make_seq(1, 2, 2), make_seq(2, 2, 2)};
  SchedulerLimits limits = chunked(8, 4);
  limits.max_batch_tokens = 5;
  limits.max_batch_seqs = 2;
  Scheduler sched({&seqs[0], &seqs[1], &seqs[2]}, 100, limits);
  const auto steps = drive_checked(sched, seqs, 100);
  ASSERT_GE(steps.size(), 4u);
  EXPECT_EQ(steps[0], (std::vector<Entry>{{0, 0, 5, true, false}}));
  EXPECT_EQ(steps[1], (std::vector<Entry>{{0, 5, 5, true, false}}));
  EXPECT_EQ(steps[2], (std::vector<Entry>{{0, 10, 2, true, true}, {1, 0, 2, true, true}}));
  // Two sequences run: the third waits for a place although tokens are left.
  EXPECT_EQ(steps[3], (std::vector<Entry>{{0, 12, 1, false, true}, {1, 2, 1, false, true}}));
}

// A 3-block cache (blocks of 4): request 0's first decode (position 4) starts a block, so a
// chunk of request 1 may take one block but not both free ones, which would preempt it at once.
TEST(ChunkedPrefill, KeepsTheDecodersNextBlocksFree) {
  std::vector<Sequence> seqs = {make_seq(0, 4, 3), make_seq(1, 8, 1)};
  Scheduler sched({&seqs[0], &seqs[1]}, 3, chunked(16, 4));
  const auto steps = drive_checked(sched, seqs, 3);
  ASSERT_GE(steps.size(), 2u);
  EXPECT_EQ(steps[0], (std::vector<Entry>{{0, 0, 4, true, true}, {1, 0, 4, true, false}}));
  EXPECT_EQ(steps[1], (std::vector<Entry>{{0, 4, 1, false, true}}));  // request 1 waits for room
  EXPECT_EQ(seqs[1].preemptions, 0);
  EXPECT_EQ(seqs[1].output.size(), 1u);
}

// A 4-block cache (blocks of 4): request 0 (4 + 9 tokens) decodes while request 1 (a 12-token
// prompt) prefills in chunks of 4 into what is free; when request 0's decode needs a block none is
// free, so request 1, admitted last and part-way through its prefill, is preempted and later
// prefilled again from position 0.
TEST(ChunkedPrefill, PreemptsAPartlyPrefilledRequestWhichRestartsFromZero) {
  std::vector<Sequence> seqs = {make_seq(0, 4, 9), make_seq(1, 12, 1)};
  Scheduler sched({&seqs[0], &seqs[1]}, 4, chunked(4, 4));
  const auto steps = drive_checked(sched, seqs, 4);
  std::vector<std::pair<int64_t, int64_t>> chunks_of_1;  // (start, count)
  for (const auto& step : steps)
    for (const Entry& e : step)
      if (std::get<0>(e) == 1) chunks_of_1.emplace_back(std::get<1>(e), std::get<2>(e));
  ASSERT_GE(chunks_of_1.size(), 3u);
  EXPECT_EQ(chunks_of_1[0], (std::pair<int64_t, int64_t>{0, 4}));
  EXPECT_EQ(chunks_of_1[1], (std::pair<int64_t, int64_t>{4, 4}));
  EXPECT_EQ(chunks_of_1[2], (std::pair<int64_t, int64_t>{0, 4})) << "not restarted from position 0";
  // Step 4: the cache is full, so request 1 gets no tokens while request 0 goes on decoding.
  EXPECT_EQ(steps[3], (std::vector<Entry>{{0, 6, 1, false, true}}));
  EXPECT_EQ(seqs[0].preemptions, 0);
  EXPECT_EQ(seqs[1].preemptions, 1);
  EXPECT_EQ(seqs[0].output.size(), 9u);
  EXPECT_EQ(seqs[1].output.size(), 1u);
}

// Random requests, arrivals, chunk sizes, limits, tight caches and both admission policies: every
// step well formed, every request finished with all its tokens.
TEST(ChunkedPrefill, RandomWorkloadsKeepEveryInvariant) {
  int64_t preempted = 0, preempted_static = 0;
  for (uint32_t run = 0; run < 120; ++run) {  // each of 60 workloads under both policies
    const uint32_t seed = run % 60;
    std::mt19937 rng(seed);
    const auto pick = [&rng](int64_t lo, int64_t hi) {
      return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
    };
    std::vector<Sequence> seqs;
    const int64_t n = pick(2, 9), block_size = pick(1, 3) * 2;
    int64_t largest = 0;
    for (int64_t i = 0; i < n; ++i) {
      seqs.push_back(make_seq(i, pick(1, 40), pick(1, 12)));
      largest = std::max(largest, blocks_for(seqs.back().total_tokens(), block_size));
    }
    std::vector<Sequence*> ptrs;
    for (Sequence& s : seqs) {
      if (s.index >= 3) s.state = Sequence::State::Pending;  // arrive later
      ptrs.push_back(&s);
    }
    SchedulerLimits limits = chunked(pick(1, 17), block_size);
    limits.max_batch_seqs = pick(1, 6);
    limits.max_batch_tokens = pick(limits.max_batch_seqs, 64);
    if (run >= 60) limits.admission = Admission::Static;
    const int64_t num_blocks = largest + pick(0, largest);
    Scheduler sched(ptrs, num_blocks, limits);
    int64_t steps = 0;
    while (!sched.done() && steps < 10000) {
      for (Sequence& s : seqs)  // request i arrives at step 2 * i
        if (s.state == Sequence::State::Pending && s.index * 2 <= steps) sched.arrive(&s);
      const auto step = sched.next_step();
      expect_well_formed(step, seqs, limits, num_blocks);
      sched.complete_step(step, std::vector<int32_t>(step.size(), 5), {}, 0, 0.0, {});
      ++steps;
      if (testing::Test::HasFailure())
        FAIL() << "seed " << seed << " (" << admission_text(limits.admission) << "), step " << steps;
    }
    ASSERT_TRUE(sched.done()) << "seed " << seed;
    for (const Sequence& s : seqs) {
      EXPECT_EQ(static_cast<int64_t>(s.output.size()), s.max_new_tokens) << "seed " << seed;
      EXPECT_TRUE(s.blocks.empty());
      preempted += s.preemptions;
      if (limits.admission == Admission::Static) preempted_static += s.preemptions;
    }
  }
  EXPECT_GT(preempted, 0) << "no workload was tight enough to preempt: the test lost its edge";
  EXPECT_GT(preempted_static, 0) << "no workload preempted under static admission";
}

}  // namespace
}  // namespace moetron
