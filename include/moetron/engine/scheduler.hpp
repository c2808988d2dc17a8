// Continuous batching over a paged KV cache, for one data-parallel replica.
//
// Every rank of a replica runs the same scheduler on the same inputs (SPMD), so the only thing
// that crosses ranks is the sampled tokens; every decision here is deterministic.
//
// Policy: first come, first served. A request is admitted when the cache has blocks for its
// prompt (and for the next step's new blocks of the requests already running) and the step's
// token budget allows the prompt; otherwise it waits, and nobody overtakes it. Every running
// request decodes one token per step and takes a block when its next token starts one; when
// none is free, the request admitted last is preempted: its blocks are freed and it waits
// again, to be recomputed (prompt and the tokens it has produced, as one prefill) when it is
// admitted again. Tokens do not change: sampling is counted per request and token. A request
// leaves at max_new_tokens or EOS and frees its blocks.
//
// Arrivals: a sequence that has not arrived yet is Pending and is not considered until
// arrive() moves it to the queue. Waiting sequences are served in the order they arrived
// (those there from the start in prompts-file order), preempted ones keeping their place.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/engine/finish_reason.hpp"

namespace moetron {

struct Sequence {
  int64_t index = 0;  // position in the prompts file
  std::string id;     // the request's id (prompts file), for messages
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 0;
  bool ignore_eos = false;
  SamplingParams sampling;
  // Arrival, in seconds after the run starts (engine/arrivals.hpp): arrival_s as given, or, for
  // a request that follows another (`after`, its prompts-file index), when that one finished.
  double arrival_s = 0;
  int64_t after = -1;
  double admitted_s = -1;  // when its first step was scheduled; -1: not yet

  enum class State { Pending, Waiting, Running, Finished } state = State::Waiting;
  std::vector<int32_t> output;
  std::vector<double> token_times_s;  // from arrival (arrival_s) to each output token
  std::vector<float> logits;          // [output tokens, vocab] with --save-logits
  std::vector<int32_t> blocks;        // KV-cache blocks, in order
  int64_t cached_tokens = 0;          // tokens whose K/V are in the cache
  int64_t preemptions = 0;            // times its cache was freed for others (recomputed)
  FinishReason finish_reason = FinishReason::Length;  // meaningful once Finished

  int64_t total_tokens() const { return static_cast<int64_t>(prompt.size()) + max_new_tokens; }
  // Tokens a (re)admission computes in one prefill: the prompt and what it has produced.
  int64_t prefill_tokens() const { return static_cast<int64_t>(prompt.size() + output.size()); }
};

class BlockPool {
 public:
  explicit BlockPool(int64_t num_blocks);
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_blocks() const { return num_blocks_; }
  std::vector<int32_t> take(int64_t n);  // n <= free_blocks()
  void give_back(std::vector<int32_t>& blocks);

 private:
  int64_t num_blocks_;
  std::vector<int32_t> free_;  // a stack: the lowest ids are handed out first
};

struct SchedulerLimits {
  int64_t block_size = 16;
  int64_t max_batch_seqs = 256;     // sequences in one step
  int64_t max_batch_tokens = 8192;  // tokens in one step (prefill budget)
};

// One sequence's share of a step: `count` new tokens starting at position `start`.
struct ScheduledSeq {
  Sequence* seq = nullptr;
  int64_t start = 0;
  int64_t count = 0;
  bool prefill() const { return start == 0; }
};

class Scheduler {
 public:
  // Sequences that are Waiting have arrived (in this order); Pending ones wait for arrive().
  Scheduler(std::vector<Sequence*> sequences, int64_t num_blocks, const SchedulerLimits& limits);
  // A Pending sequence arrives: it joins the queue behind every waiting one.
  void arrive(Sequence* s);

  bool done() const;
  // The next step: every running sequence decodes one token, then waiting ones are admitted.
  std::vector<ScheduledSeq> next_step();
  // Records the token sampled for each scheduled sequence (same order) at `now_s` seconds
  // after the run started (stored as now_s - arrival_s).
  void complete_step(const std::vector<ScheduledSeq>& step, const std::vector<int32_t>& tokens,
                     const std::vector<const float*>& logits_rows, int64_t vocab, double now_s,
                     const std::vector<int64_t>& eos_ids);
  int64_t running() const;
  int64_t waiting() const;  // arrived and not running
  int64_t blocks_needed(const Sequence& s) const;
  const SchedulerLimits& limits() const { return limits_; }

 private:
  int64_t blocks_for(int64_t tokens) const;
  // True when a token at `position` is the first of a block. A running sequence holds the
  // blocks of its cached tokens and no more, so its next token needs a new block exactly then.
  bool starts_block(int64_t position) const;
  void preempt(Sequence* s);

  std::vector<Sequence*> all_;      // every sequence, arrived or not
  std::vector<Sequence*> seqs_;     // the arrived ones, in arrival order
  std::vector<Sequence*> running_;  // in admission order: the last is preempted first
  BlockPool pool_;
  SchedulerLimits limits_;
};

// Lays out a group of scheduled sequences as one forward batch (token ids, positions, cache
// slots, block tables, the rows whose logits are wanted).
BatchLayout build_batch_layout(const std::vector<ScheduledSeq>& group, int64_t block_size);

// Splits a step into `parts` micro-batches of consecutive sequences with balanced token counts
// (for pipeline parallelism); some parts may be empty.
std::vector<std::vector<ScheduledSeq>> split_micro_batches(const std::vector<ScheduledSeq>& step,
                                                           int64_t parts);

}  // namespace moetron
