// Continuous batching over a paged KV cache, for one data-parallel replica.
//
// Every rank of a replica runs the same scheduler on the same inputs (SPMD), so the only thing
// that crosses ranks is the sampled tokens; every decision here is deterministic.
//
// Policy: first come, first served. Each step first decodes every running request (one token
// each), then gives the step's prefill budget to the requests still to prefill, in order: the
// one whose prefill is under way first, then the waiting ones as they queue. Nobody overtakes:
// when the head of that queue does not fit, those behind it wait too.
//
// Whole prompts (SchedulerLimits::prefill_chunk == 0, the default): a request is admitted when
// the cache has blocks for its whole prefill (beyond the blocks the running requests take in the
// next step) and the step's token budget (max_batch_tokens) allows it; its prefill runs in one
// step. A prompt longer than the budget runs alone. A recompute longer than max_step_tokens
// (what the forward's buffers hold) runs in pieces of that size over consecutive steps.
//
// Chunked prefill (prefill_chunk = N > 0): a step takes at most N prefill tokens beyond its
// decodes (and max_batch_tokens in all), so a long prompt no longer stalls the running requests'
// next tokens. The head's prefill is cut into chunks over several steps, each chunk taking the
// blocks for its own tokens; what the budget leaves goes to the next waiting request. A request is
// Running from its first chunk; only the chunk that ends its prefill yields a token (its TTFT).
// A chunk attends to the earlier chunks' K/V in the cache (kv_lens = start + count).
//
// Adaptive chunks (prefill_chunk = kPrefillChunkAuto, engine/prefill_budget.hpp): as chunked
// prefill, but each step's prefill budget comes from the function passed to next_step, given the
// number of decodes the step holds (the engine sizes it from measured step times).
//
// Preemption: every running request takes a block when its next decode token starts one; when
// none is free, the request admitted last is preempted (one still prefilling, with chunks, is
// always among the last): its blocks are freed and it waits again, to be recomputed from
// position 0 (prompt and the tokens it has produced, as one prefill, chunked like any other) when
// it is admitted again. Tokens do not change: sampling is counted per request and token. A
// request leaves at max_new_tokens or EOS and frees its blocks.
//
// Admission (SchedulerLimits::admission, `--admission`): all of the above is Admission::Continuous,
// the default: a waiting request joins any step that has room, so its prefill runs beside the
// running requests' decodes, and in an MoE model the prefill touches most experts, making that
// step several decode steps long (issue 14's inter-token latency). Admission::Static (gang
// batching) never puts a prefill token and a decode in one step. A waiting request is admitted
// only in a step where no admitted request is running (none decoding, none prefilling): then the
// arrived requests are admitted together, first come first served, within max_batch_seqs,
// max_batch_tokens, the cache and the prefill rules above (whole prompts, or the step's chunk:
// with chunks, the group is what the first step's budget reaches). While one of the group is
// still prefilling (its later chunks, or a recompute in pieces), steps hold only that prefill and
// the group's decoders wait; then the group decodes together, step after step, until its last
// request leaves; then the next group. A request that arrives meanwhile waits for that. When the
// group's prefill cannot progress (the cache holds no room beyond the blocks kept for the
// waiting decoders' next tokens) the decoders run instead, so the group always moves on.
// Preemption works as above: a request preempted under Static waits until its group has
// finished and is recomputed with the next group, first in line (it keeps its place in the
// queue); the cache is then empty, so it always fits, and nothing can deadlock.
//
// Arrivals: a sequence that has not arrived yet is Pending and is not considered until
// arrive() moves it to the queue. Waiting sequences are served in the order they arrived
// (those there from the start in prompts-file order), preempted ones keeping their place.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/engine/finish_reason.hpp"
#include "moetron/engine/prefill_budget.hpp"

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
  // Where this admission's prefill ends (prefill_tokens() when admitted): while Running with
  // fewer tokens cached, its prefill is still under way in chunks.
  int64_t prefill_end = 0;
  int64_t preemptions = 0;            // times its cache was freed for others (recomputed)
  FinishReason finish_reason = FinishReason::Length;  // meaningful once Finished

  int64_t total_tokens() const { return static_cast<int64_t>(prompt.size()) + max_new_tokens; }
  // Tokens a (re)admission computes in one prefill: the prompt and what it has produced.
  int64_t prefill_tokens() const { return static_cast<int64_t>(prompt.size() + output.size()); }
  bool prefilling() const { return state == State::Running && cached_tokens < prefill_end; }
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

// When a waiting request may join a step (see the comment at the top).
enum class Admission { Continuous, Static };
// `--admission` as given: "continuous" or "static"; anything else throws Error naming the option.
Admission parse_admission(const std::string& text);
// The setting as the results file records it (root attribute admission).
std::string admission_text(Admission admission);

struct SchedulerLimits {
  int64_t block_size = 16;
  int64_t max_batch_seqs = 256;     // sequences in one step
  int64_t max_batch_tokens = 8192;  // tokens in one step (prefill budget)
  // Prefill tokens a step may take beyond its decodes; 0: whole prompts; kPrefillChunkAuto: the
  // budget next_step is given.
  int64_t prefill_chunk = 0;
  // Most tokens the forward holds in one step (RunSession's max_step_tokens): the longest prompt
  // or max_batch_tokens. Only a recompute (prompt and output) can be longer: it goes in pieces.
  int64_t max_step_tokens = std::numeric_limits<int64_t>::max();
  Admission admission = Admission::Continuous;
};

// One sequence's share of a step: `count` new tokens starting at position `start`.
struct ScheduledSeq {
  Sequence* seq = nullptr;
  int64_t start = 0;
  int64_t count = 0;
  bool prefill = false;  // prefill tokens (prompt, or output recomputed), not one decode token
  // The last row's logits give the sequence's next token: false for a prefill chunk that leaves
  // part of the prefill to later steps (its logits are computed and dropped).
  bool samples = true;
};

class Scheduler {
 public:
  // Sequences that are Waiting have arrived (in this order); Pending ones wait for arrive().
  Scheduler(std::vector<Sequence*> sequences, int64_t num_blocks, const SchedulerLimits& limits);
  // A Pending sequence arrives: it joins the queue behind every waiting one.
  void arrive(Sequence* s);

  bool done() const;
  // The step's prefill token budget from the number of decodes it holds (kPrefillChunkAuto).
  using PrefillBudget = std::function<int64_t(int64_t decodes)>;
  // The next step: every running sequence decodes one token, then prefills take what is left
  // (Admission::Static: the group's prefill, or else its decodes, never both).
  // `budget` is required with kPrefillChunkAuto and unused otherwise.
  std::vector<ScheduledSeq> next_step(const PrefillBudget& budget = nullptr);
  // The prefill budget of the last next_step: the chunk (fixed or adaptive); 0 with whole prompts
  // and in a step of Admission::Static that decodes.
  int64_t prefill_budget() const { return prefill_budget_; }
  // Records the token sampled for each scheduled sequence (same order; ignored where it does not
  // sample) at `now_s` seconds after the run started (stored as now_s - arrival_s).
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
  // Decodes every running sequence that is done prefilling, preempting where blocks run out;
  // returns the blocks the decoders will take in the step after (kept free for them).
  int64_t schedule_decodes(std::vector<ScheduledSeq>& step);
  // Blocks the running sequences done prefilling take for their token `ahead` steps on (0: the
  // next token they decode).
  int64_t decode_blocks(int64_t ahead) const;
  // Gives the step's prefill budget to prefill_queue(admit), keeping `reserved` blocks free.
  void schedule_prefills(std::vector<ScheduledSeq>& step, const PrefillBudget& adaptive, int64_t reserved,
                         bool admit);
  // Running sequences still prefilling (admission order), then, when `admit`, the waiting ones
  // (queue order).
  std::vector<Sequence*> prefill_queue(bool admit) const;
  // Tokens of s's prefill this step may take (0: it must wait), given the step's tokens so far,
  // the prefill budget left and the blocks kept for the decoders.
  int64_t chunk_tokens(const Sequence& s, const std::vector<ScheduledSeq>& step, int64_t budget,
                       int64_t reserved) const;

  std::vector<Sequence*> all_;      // every sequence, arrived or not
  std::vector<Sequence*> seqs_;     // the arrived ones, in arrival order
  std::vector<Sequence*> running_;  // in admission order: the last is preempted first
  BlockPool pool_;
  SchedulerLimits limits_;
  int64_t prefill_budget_ = 0;
};

// Lays out a group of scheduled sequences as one forward batch (token ids, positions, cache
// slots, block tables, the rows whose logits are wanted).
BatchLayout build_batch_layout(const std::vector<ScheduledSeq>& group, int64_t block_size);

// Splits a step into `parts` micro-batches of consecutive sequences with balanced token counts
// (for pipeline parallelism); some parts may be empty.
std::vector<std::vector<ScheduledSeq>> split_micro_batches(const std::vector<ScheduledSeq>& step,
                                                           int64_t parts);

}  // namespace moetron
