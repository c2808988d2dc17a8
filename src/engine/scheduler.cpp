#include "moetron/engine/scheduler.hpp"

#include <algorithm>

#include "moetron/core/error.hpp"

namespace moetron {

BlockPool::BlockPool(int64_t num_blocks) : num_blocks_(num_blocks) {
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

std::vector<int32_t> BlockPool::take(int64_t n) {
  MOETRON_ASSERT(n <= free_blocks());
  std::vector<int32_t> out(free_.end() - n, free_.end());
  std::reverse(out.begin(), out.end());
  free_.resize(free_.size() - static_cast<size_t>(n));
  return out;
}

void BlockPool::give_back(std::vector<int32_t>& blocks) {
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) free_.push_back(*it);
  blocks.clear();
}

Admission parse_admission(const std::string& text) {
  if (text == "continuous") return Admission::Continuous;
  MOETRON_CHECK(text == "static", "--admission must be continuous or static, got '" << text << "'");
  return Admission::Static;
}

std::string admission_text(Admission admission) {
  return admission == Admission::Static ? "static" : "continuous";
}

Scheduler::Scheduler(std::vector<Sequence*> sequences, int64_t num_blocks,
                     const SchedulerLimits& limits)
    : all_(std::move(sequences)), pool_(num_blocks), limits_(limits) {
  MOETRON_CHECK(limits_.prefill_chunk >= 0 || limits_.prefill_chunk == kPrefillChunkAuto,
                "prefill chunk " << limits_.prefill_chunk << ": expected >= 0 or auto");
  for (Sequence* s : all_)
    if (s->state != Sequence::State::Pending) seqs_.push_back(s);
  for (const Sequence* s : all_) {
    MOETRON_CHECK(blocks_needed(*s) <= num_blocks,
                  "request " << s->index << " needs " << s->total_tokens()
                             << " tokens of KV cache but the cache holds only "
                             << num_blocks * limits_.block_size
                             << " per replica (raise --kv-cache-tokens or lower its length)");
  }
}

int64_t Scheduler::blocks_for(int64_t tokens) const {
  return (tokens + limits_.block_size - 1) / limits_.block_size;
}

int64_t Scheduler::blocks_needed(const Sequence& s) const { return blocks_for(s.total_tokens()); }

bool Scheduler::starts_block(int64_t position) const { return position % limits_.block_size == 0; }

void Scheduler::arrive(Sequence* s) {
  MOETRON_ASSERT(s->state == Sequence::State::Pending);
  s->state = Sequence::State::Waiting;
  seqs_.push_back(s);
}

bool Scheduler::done() const {
  for (const Sequence* s : all_)
    if (s->state != Sequence::State::Finished) return false;
  return true;
}

int64_t Scheduler::running() const { return static_cast<int64_t>(running_.size()); }

int64_t Scheduler::waiting() const {
  return std::count_if(seqs_.begin(), seqs_.end(),
                       [](const Sequence* s) { return s->state == Sequence::State::Waiting; });
}

void Scheduler::preempt(Sequence* s) {
  pool_.give_back(s->blocks);
  s->cached_tokens = 0;  // a prefill under way restarts from position 0 too
  s->prefill_end = 0;
  s->state = Sequence::State::Waiting;
  ++s->preemptions;
  running_.erase(std::find(running_.begin(), running_.end(), s));
}

int64_t Scheduler::schedule_decodes(std::vector<ScheduledSeq>& step) {
  // Admission order; one whose token starts a block takes one, preempting the latest admitted
  // (itself, if it is the latest) while none is free.
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence* s = running_[i];
    if (s->prefilling()) continue;  // its next chunk comes after the decodes
    if (starts_block(s->cached_tokens)) {  // its blocks hold exactly the cached tokens
      while (pool_.free_blocks() == 0 && running_.back() != s) preempt(running_.back());
      if (pool_.free_blocks() == 0) {
        preempt(s);
        break;  // s was the latest: nobody after it runs this step
      }
      const std::vector<int32_t> block = pool_.take(1);
      s->blocks.push_back(block[0]);
    }
    step.push_back({s, s->cached_tokens, 1, /*prefill=*/false, /*samples=*/true});
  }
  // The blocks the decoders take in the next step stay free for them: handing them to a
  // prefill would only preempt it again.
  return decode_blocks(1);
}

int64_t Scheduler::decode_blocks(int64_t ahead) const {
  int64_t blocks = 0;
  for (const Sequence* s : running_)
    if (!s->prefilling() && starts_block(s->cached_tokens + ahead)) ++blocks;
  return blocks;
}

std::vector<Sequence*> Scheduler::prefill_queue(bool admit) const {
  std::vector<Sequence*> queue;
  for (Sequence* s : running_)
    if (s->prefilling()) queue.push_back(s);
  if (!admit) return queue;
  for (Sequence* s : seqs_)
    if (s->state == Sequence::State::Waiting) queue.push_back(s);
  return queue;
}

int64_t Scheduler::chunk_tokens(const Sequence& s, const std::vector<ScheduledSeq>& step,
                                int64_t budget, int64_t reserved) const {
  int64_t step_tokens = 0;
  for (const ScheduledSeq& g : step) step_tokens += g.count;
  const bool running = s.state == Sequence::State::Running;
  const int64_t start = running ? s.cached_tokens : 0;
  const int64_t left = (running ? s.prefill_end : s.prefill_tokens()) - start;
  const int64_t usable_blocks =
      static_cast<int64_t>(s.blocks.size()) + pool_.free_blocks() - reserved;
  if (limits_.prefill_chunk == 0) {  // the whole prefill in one step, or none of it
    // (only a recompute past the forward's capacity takes pieces; the cache must hold it all)
    const int64_t count = std::min(left, limits_.max_step_tokens);
    const bool fits_budget = step_tokens + count <= limits_.max_batch_tokens || step.empty();
    return fits_budget && blocks_for(start + left) <= usable_blocks ? count : 0;
  }
  const int64_t cache_room = usable_blocks * limits_.block_size - start;
  return std::max<int64_t>(
      0, std::min({left, budget, limits_.max_batch_tokens - step_tokens, cache_room}));
}

std::vector<ScheduledSeq> Scheduler::next_step(const PrefillBudget& adaptive) {
  std::vector<ScheduledSeq> step;
  if (limits_.admission == Admission::Continuous) {
    const int64_t reserved = schedule_decodes(step);
    schedule_prefills(step, adaptive, reserved, /*admit=*/true);
    return step;
  }
  // Static: the group's prefill first (a new group only when nothing runs), keeping the blocks
  // of the waiting decoders' next tokens free; its decoders alone when there is none, or when it
  // cannot progress.
  const bool group_prefilling =
      std::any_of(running_.begin(), running_.end(), [](const Sequence* s) { return s->prefilling(); });
  if (running_.empty() || group_prefilling)
    schedule_prefills(step, adaptive, decode_blocks(0), /*admit=*/running_.empty());
  if (step.empty()) {
    prefill_budget_ = 0;
    schedule_decodes(step);
  }
  return step;
}

void Scheduler::schedule_prefills(std::vector<ScheduledSeq>& step, const PrefillBudget& adaptive,
                                  int64_t reserved, bool admit) {
  const bool is_adaptive = limits_.prefill_chunk == kPrefillChunkAuto;
  MOETRON_ASSERT(!is_adaptive || adaptive);
  prefill_budget_ = is_adaptive ? adaptive(static_cast<int64_t>(step.size())) : limits_.prefill_chunk;
  MOETRON_ASSERT(prefill_budget_ >= 0);
  int64_t budget = limits_.prefill_chunk != 0 ? prefill_budget_ : limits_.max_batch_tokens;
  for (Sequence* s : prefill_queue(admit)) {
    if (static_cast<int64_t>(step.size()) >= limits_.max_batch_seqs) break;
    const int64_t count = chunk_tokens(*s, step, budget, reserved);
    if (count == 0) break;  // first come, first served: nobody overtakes the head
    if (s->state == Sequence::State::Waiting) {
      s->state = Sequence::State::Running;
      s->prefill_end = s->prefill_tokens();
      running_.push_back(s);
    }
    const int64_t end = s->cached_tokens + count;
    const std::vector<int32_t> more = pool_.take(blocks_for(end) - static_cast<int64_t>(s->blocks.size()));
    s->blocks.insert(s->blocks.end(), more.begin(), more.end());
    const bool last_chunk = end == s->prefill_end;
    step.push_back({s, s->cached_tokens, count, /*prefill=*/true, /*samples=*/last_chunk});
    budget -= count;
    if (!last_chunk) break;  // the budget or the cache is spent
    if (starts_block(end)) ++reserved;  // its first decode starts a block
  }
}

void Scheduler::complete_step(const std::vector<ScheduledSeq>& step,
                              const std::vector<int32_t>& tokens,
                              const std::vector<const float*>& logits_rows, int64_t vocab,
                              double now_s, const std::vector<int64_t>& eos_ids) {
  MOETRON_ASSERT(tokens.size() == step.size());
  for (size_t i = 0; i < step.size(); ++i) {
    Sequence& s = *step[i].seq;
    s.cached_tokens = step[i].start + step[i].count;
    if (!step[i].samples) continue;  // a prefill chunk with more to come: no token yet
    s.output.push_back(tokens[i]);
    s.token_times_s.push_back(now_s - s.arrival_s);
    if (i < logits_rows.size() && logits_rows[i] != nullptr)
      s.logits.insert(s.logits.end(), logits_rows[i], logits_rows[i] + vocab);
    const bool eos = !s.ignore_eos &&
                     std::find(eos_ids.begin(), eos_ids.end(), tokens[i]) != eos_ids.end();
    if (eos || static_cast<int64_t>(s.output.size()) >= s.max_new_tokens) {
      s.finish_reason = eos ? FinishReason::Eos : FinishReason::Length;
      s.state = Sequence::State::Finished;
      pool_.give_back(s.blocks);
      running_.erase(std::find(running_.begin(), running_.end(), &s));
    }
  }
}

BatchLayout build_batch_layout(const std::vector<ScheduledSeq>& group, int64_t block_size) {
  BatchLayout b;
  b.block_size = block_size;
  b.num_seqs = static_cast<int64_t>(group.size());
  for (const ScheduledSeq& g : group)
    b.max_blocks_per_seq = std::max<int64_t>(b.max_blocks_per_seq,
                                             static_cast<int64_t>(g.seq->blocks.size()));
  b.query_start.push_back(0);
  b.block_tables.assign(static_cast<size_t>(b.num_seqs * b.max_blocks_per_seq), 0);
  for (size_t i = 0; i < group.size(); ++i) {
    const Sequence& s = *group[i].seq;
    for (int64_t p = group[i].start; p < group[i].start + group[i].count; ++p) {
      // Position p holds prompt token p, or (decoding) the last token produced.
      const int64_t prompt = static_cast<int64_t>(s.prompt.size());
      b.token_ids.push_back(p < prompt ? s.prompt[static_cast<size_t>(p)]
                                       : s.output[static_cast<size_t>(p - prompt)]);
      b.positions.push_back(static_cast<int32_t>(p));
      b.slot_mapping.push_back(s.blocks[static_cast<size_t>(p / block_size)] *
                                   static_cast<int32_t>(block_size) +
                               static_cast<int32_t>(p % block_size));
    }
    b.query_start.push_back(static_cast<int32_t>(b.token_ids.size()));
    b.kv_lens.push_back(static_cast<int32_t>(group[i].start + group[i].count));
    std::copy(s.blocks.begin(), s.blocks.end(),
              b.block_tables.begin() + static_cast<std::ptrdiff_t>(i * b.max_blocks_per_seq));
    b.logit_rows.push_back(static_cast<int32_t>(b.token_ids.size()) - 1);
  }
  b.num_tokens = static_cast<int64_t>(b.token_ids.size());
  return b;
}

std::vector<std::vector<ScheduledSeq>> split_micro_batches(const std::vector<ScheduledSeq>& step,
                                                           int64_t parts) {
  std::vector<std::vector<ScheduledSeq>> out(static_cast<size_t>(parts));
  int64_t total = 0;
  for (const ScheduledSeq& s : step) total += s.count;
  // Contiguous split: a sequence goes to the next part when its midpoint lies past this part's
  // share of the tokens (total * (p+1) / parts).
  int64_t seen = 0;
  size_t part = 0;
  for (const ScheduledSeq& s : step) {
    while (part + 1 < out.size() && !out[part].empty() &&
           2 * seen + s.count > 2 * (total * static_cast<int64_t>(part + 1) / parts))
      ++part;
    out[part].push_back(s);
    seen += s.count;
  }
  return out;
}

}  // namespace moetron
