#include "moetron/engine/engine.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <thread>

#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#include "moetron/engine/arrivals.hpp"
#include "moetron/engine/routing_windows.hpp"
#include "moetron/sampling/sampling.hpp"

namespace moetron {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Fault injection for the failure tests: MOETRON_INJECT_FAULT=RANK:STEP makes world rank RANK
// throw at the start of step STEP, as a real error in the middle of a run would;
// RANK:STEP:stop makes it stop itself (SIGSTOP) there instead, as a wedged rank would look to
// its peers. It says so (with its pid, for the test's cleanup) before it stops.
void maybe_inject_fault(int world_rank, size_t step) {
  static const char* spec = std::getenv("MOETRON_INJECT_FAULT");
  if (spec == nullptr) return;
  // A spec that is not exactly RANK:STEP[:stop] is refused: a fault test must never pass by
  // injecting nothing.
  const std::string text = spec;
  const size_t colon = text.find(':');
  const size_t kind_colon = colon == std::string::npos ? colon : text.find(':', colon + 1);
  const size_t step_end = kind_colon == std::string::npos ? text.size() : kind_colon;
  const auto digits = [&](size_t begin, size_t end) {
    return end > begin && end - begin <= 9 && text.find_first_not_of("0123456789", begin) >= end;
  };
  const bool stop = kind_colon != std::string::npos && text.compare(kind_colon + 1, std::string::npos, "stop") == 0;
  MOETRON_CHECK(colon != std::string::npos && digits(0, colon) && digits(colon + 1, step_end) &&
                    (kind_colon == std::string::npos || stop),
                "MOETRON_INJECT_FAULT='" << text << "': expected RANK:STEP or RANK:STEP:stop (integers >= 0, "
                                         << "e.g. 2:3 to throw, 2:3:stop to raise SIGSTOP)");
  const int rank = std::atoi(text.c_str());
  const size_t at = static_cast<size_t>(std::atoll(text.c_str() + colon + 1));
  if (rank != world_rank || at != step) return;
  if (!stop) MOETRON_FAIL("injected fault at step " << step << " (MOETRON_INJECT_FAULT=" << spec << ")");
  std::fprintf(stderr, "moetron: rank %d (pid %ld): stopping itself at step %zu (MOETRON_INJECT_FAULT=%s)\n",
               world_rank, static_cast<long>(getpid()), step, spec);
  std::fflush(stderr);
  raise(SIGSTOP);
}

using Clock = std::chrono::steady_clock;

// Time 0 of arrival_s: every rank leaves this all-reduce together (within its skew, microseconds
// on one node), so their clocks agree closely from here.
Clock::time_point start_together(Communicator& world) {
  std::vector<int64_t> nothing = {0};
  world.allreduce_host(nothing, /*max_instead_of_sum=*/true);
  return Clock::now();
}

// What every rank of the job decides arrivals by, so that they all admit the same requests at
// the same step (replicas in lockstep, and every stage and tp rank of a replica, must run the
// same schedule). One world all-reduce (max over negated values gives minima):
struct AgreedClock {
  double now_s = 0;  // the least elapsed time over the ranks: every rank's clock has passed it,
                     // so no rank sees a request admitted before its arrival_s
  double next_arrival_s = 0;  // the earliest timed arrival still pending on any rank
  bool pending = false;       // any request, timed or following another, not arrived anywhere
};
AgreedClock agree_clock(Communicator& world, Clock::time_point t0, const Arrivals& arrivals) {
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max() / 4;
  const double next = arrivals.next_arrival_s();
  std::vector<int64_t> v = {-static_cast<int64_t>(seconds_since(t0) * 1e9),
                            -(std::isfinite(next) ? static_cast<int64_t>(next * 1e9) : kNever),
                            arrivals.pending() > 0 ? 1 : 0};
  world.allreduce_host(v, /*max_instead_of_sum=*/true);
  AgreedClock c;
  c.now_s = static_cast<double>(-v[0]) * 1e-9;
  c.next_arrival_s = -v[1] == kNever ? std::numeric_limits<double>::infinity() : static_cast<double>(-v[1]) * 1e-9;
  c.pending = v[2] > 0;
  return c;
}

// Nothing runs anywhere and the next request arrives at `arrival_s`: sleep until then, so an
// idle engine costs neither the host nor the GPU anything. Every rank sleeps to the same
// agreed time on its own clock; the next agreement waits for the last to wake.
void idle_until(Clock::time_point t0, double arrival_s) {
  MOETRON_ASSERT(std::isfinite(arrival_s));  // an arrival is pending and nothing runs: it is timed
  std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(arrival_s)));
}

}  // namespace

Engine::Engine(const ModelConfig& config, Ops& ops, ModelForward& forward,
               const EngineGroups& groups, const EngineOptions& options, DecodeGraphs* graphs)
    : config_(config), ops_(ops), forward_(forward), groups_(groups), options_(options), graphs_(graphs) {
  MOETRON_CHECK(options.micro_batches >= 1 && (groups.pp_size > 1 || options.micro_batches == 1),
                "engine: " << options.micro_batches << " micro-batches a step on " << groups.pp_size
                           << " pipeline stages (plan_problem lets only a pipeline split a step)");
  sampled_ids_ = ops_.alloc(DType::I32, {std::max<int64_t>(options.limits.max_batch_seqs, 1)});
}

void Engine::run_micro_batch(const std::vector<ScheduledSeq>& group, int64_t dispatch_tokens,
                             std::vector<int32_t>& tokens, std::vector<float>& logits) {
  if (graphs_ != nullptr && graphs_->fits(group, dispatch_tokens)) {  // one stage: first and last
    const Tensor step_logits = graphs_->run(group, dispatch_tokens);
    forward_.count_routing(static_cast<int64_t>(group.size()));
    sample(group, step_logits, tokens, logits);
    return;
  }
  const bool first = groups_.pp_rank == 0, last = groups_.pp_rank == groups_.pp_size - 1;
  ops_.reset_temps();
  BatchLayout layout = build_batch_layout(group, options_.limits.block_size);
  layout.dispatch_tokens = dispatch_tokens;
  const BatchTensors batch = ops_.upload_batch(layout);
  Tensor hidden;
  if (first) {
    hidden = forward_.embed(batch);
  } else {
    hidden = ops_.temp(ops_.activation_dtype(), {layout.num_tokens, config_.hidden_size});
    groups_.pipeline->recv(hidden, groups_.pp_rank - 1, /*tag=*/1);
  }
  forward_.run_layers(hidden, batch);
  forward_.count_routing(layout.num_tokens);
  if (!last) {
    groups_.pipeline->send(hidden, groups_.pp_rank + 1, /*tag=*/1);
    return;
  }
  if (group.empty()) return;  // an idle replica's share of a lockstep step
  sample(group, forward_.logits_device(hidden, batch), tokens, logits);
}

void Engine::sample(const std::vector<ScheduledSeq>& group, const Tensor& step_logits,
                    std::vector<int32_t>& tokens, std::vector<float>& logits) {
  const int64_t n = static_cast<int64_t>(group.size()), V = config_.vocab_size;
  if (n == 0) return;  // an idle replica's share of a lockstep step
  if (!options_.save_logits) {
    // Only the token ids cross to the host, not [n, V] logits.
    Tensor ids = sampled_ids_.slice_rows(0, n);
    sample_on_backend(group, step_logits.slice_rows(0, n), ids);
    std::vector<int32_t> host(static_cast<size_t>(n));
    ops_.to_host(ids, host.data());
    check_sampled(group, host.data());
    tokens.insert(tokens.end(), host.begin(), host.end());
    return;
  }
  const std::vector<float> rows = forward_.logits_to_host(step_logits, n);
  std::vector<int32_t> chosen;
  for (int64_t i = 0; i < n; ++i) {
    const Sequence& s = *group[static_cast<size_t>(i)].seq;
    const float* row = &rows[static_cast<size_t>(i * V)];
    chosen.push_back(sample_token(row, V, s.sampling, static_cast<uint64_t>(s.output.size())));
    logits.insert(logits.end(), row, row + V);  // kept for the results file
  }
  check_sampled(group, chosen.data());
  tokens.insert(tokens.end(), chosen.begin(), chosen.end());
}

void Engine::check_sampled(const std::vector<ScheduledSeq>& group, const int32_t* ids) const {
  for (size_t i = 0; i < group.size(); ++i) {
    if (ids[i] != kNonFiniteToken) continue;
    const Sequence& s = *group[i].seq;
    MOETRON_FAIL("request '" << s.id << "' (prompts line " << s.index + 1 << "): its logits hold NaN or +Inf at step "
                             << step_ << " (its output token " << s.output.size()
                             << "); the checkpoint's weights or the arithmetic are broken");
  }
}

double Engine::comm_blocked_seconds() const {
  std::vector<const Communicator*> seen;
  double s = 0;
  for (const Communicator* c : {groups_.world, groups_.tp, groups_.replica, groups_.pipeline, groups_.stage}) {
    if (c == nullptr || std::find(seen.begin(), seen.end(), c) != seen.end()) continue;
    seen.push_back(c);
    s += c->blocked_seconds();
  }
  return s;
}

std::vector<int64_t> Engine::agree_dispatch_tokens(
    const std::vector<std::vector<ScheduledSeq>>& parts, bool any_prefill) {
  std::vector<int64_t> most(parts.size(), 0);
  // Prefill steps exchange counts instead: a worst-case buffer for a prompt would be large.
  if (groups_.dp_size == 1 || any_prefill) return most;
  for (size_t i = 0; i < parts.size(); ++i)
    for (const ScheduledSeq& s : parts[i]) most[i] += s.count;
  groups_.world->allreduce_host(most, /*max_instead_of_sum=*/true);
  LOG_DEBUG("decode step: expert dispatch between replicas in fixed-capacity buffers for "
            << *std::max_element(most.begin(), most.end()) << " tokens per replica");
  return most;
}

void Engine::sample_on_backend(const std::vector<ScheduledSeq>& group, const Tensor& step_logits,
                               Tensor& ids) {
  const bool greedy = std::all_of(group.begin(), group.end(), [](const ScheduledSeq& s) {
    return s.seq->sampling.temperature == 0.0f;
  });
  if (greedy) {  // one pass over each row, where the sampler makes several
    ops_.argmax_rows(step_logits, ids);
    return;
  }
  std::vector<SamplingParams> params;
  std::vector<uint64_t> steps;  // the counter: tokens the request has generated so far
  for (const ScheduledSeq& s : group) {
    params.push_back(s.seq->sampling);
    steps.push_back(static_cast<uint64_t>(s.seq->output.size()));
  }
  ops_.sample_rows(step_logits, params, steps, ids);
}

EngineReport Engine::run(std::vector<Sequence>& sequences) {
  Arrivals arrivals(sequences);  // before the scheduler: it marks the later ones Pending
  std::vector<Sequence*> mine;
  for (Sequence& s : sequences) mine.push_back(&s);
  Scheduler scheduler(mine, options_.kv_blocks, options_.limits);
  // --prefill-chunk auto: the model of step times every rank of the replica feeds alike (the
  // sampling rank's measured times, sent with the tokens), so all cut the same chunks.
  const bool adaptive = options_.limits.prefill_chunk == kPrefillChunkAuto;
  StepCostModel step_costs;
  Scheduler::PrefillBudget budget;  // empty unless adaptive: next_step then ignores it
  if (adaptive)
    budget = [&](int64_t decodes) {
      return adaptive_prefill_budget(options_.adaptive_chunk, decodes, step_costs.estimate(decodes),
                                     options_.limits.max_batch_tokens, step_costs.observed());
    };
  const bool last = groups_.pp_rank == groups_.pp_size - 1;
  const int64_t V = config_.vocab_size;
  EngineReport report;
  const auto t0 = start_together(*groups_.world);
  auto last_progress = t0;
  int64_t generated = 0;
  RoutingWindows windows(options_.routing_window,
                         max_routing_windows(config_.num_layers, std::max<int64_t>(config_.num_experts, 1)));
  const auto read_counts = [this] { return forward_.expert_counts(); };
  // Until the ranks agree that no arrival is left, each step starts by agreeing on the clock
  // (runs whose requests all arrive at the start agree once).
  bool arrivals_pending = true;

  while (true) {
    // Replicas step in lockstep (they meet in the experts' all-to-all): go on while any has
    // work, and count the step's totals on the way.
    step_ = report.steps.size();
    maybe_inject_fault(groups_.world->rank(), step_);
    double next_arrival_s = 0;
    if (arrivals_pending) {
      const AgreedClock clock = agree_clock(*groups_.world, t0, arrivals);
      arrivals_pending = clock.pending;
      next_arrival_s = clock.next_arrival_s;
      for (Sequence* s : arrivals.due(clock.now_s)) scheduler.arrive(s);
    }
    std::vector<ScheduledSeq> step = scheduler.next_step(budget);
    const double scheduled_s = seconds_since(t0);
    for (const ScheduledSeq& s : step)
      if (s.seq->admitted_s < 0) s.seq->admitted_s = scheduled_s;
    int64_t step_tokens = 0;
    for (const ScheduledSeq& s : step) step_tokens += s.count;
    const bool prefill =
        std::any_of(step.begin(), step.end(), [](const ScheduledSeq& s) { return s.prefill; });
    // A prefill chunk with more to come yields no token: count only those that do.
    const int64_t sampling =
        std::count_if(step.begin(), step.end(), [](const ScheduledSeq& s) { return s.samples; });
    std::vector<int64_t> totals = {static_cast<int64_t>(step.size()), step_tokens, prefill ? 1 : 0,
                                   sampling};
    groups_.world->allreduce_host(totals, /*max_instead_of_sum=*/false);
    // Each replica's numbers were counted by each of its pp * tp ranks.
    const int64_t per_replica = groups_.world->size() / groups_.dp_size;
    if (totals[0] == 0) {
      if (!arrivals_pending) break;
      idle_until(t0, next_arrival_s);
      continue;
    }
    const auto step_start = std::chrono::steady_clock::now();
    const double blocked_at_start = comm_blocked_seconds();
    if (options_.observer != nullptr) options_.observer->step_begin(!prefill);

    std::vector<int32_t> tokens;
    std::vector<float> logits;
    const auto parts = split_micro_batches(step, options_.micro_batches);
    const std::vector<int64_t> dispatch_tokens = agree_dispatch_tokens(parts, totals[2] > 0);
    for (size_t i = 0; i < parts.size(); ++i) {
      // Without other replicas an empty micro-batch has no one to meet: skip it.
      if (parts[i].empty() && groups_.dp_size == 1) continue;
      run_micro_batch(parts[i], dispatch_tokens[i], tokens, logits);
    }
    // The last stage's tp rank 0 has the tokens; every rank of the replica needs them to keep
    // its scheduler in step. With adaptive chunks the step's time as that rank measured it goes
    // with them: the one time every rank of the replica feeds its step-cost model (not a
    // replica's empty share of a lockstep step, whose time is the other replicas' work). With
    // dp > 1 it includes the waits for the other replicas in every MoE layer's all-to-all, where
    // their tokens run on this replica's experts too: no time of the replica's own work exists to
    // send instead (engine/prefill_budget.hpp, "Replicas").
    std::vector<int64_t> shared(tokens.begin(), tokens.end());
    shared.resize(step.size());
    if (adaptive) shared.push_back(static_cast<int64_t>(seconds_since(step_start) * 1e9));
    groups_.replica->broadcast_host(shared, groups_.replica_root);
    if (adaptive) {
      const double agreed_s = static_cast<double>(shared.back()) * 1e-9;
      shared.pop_back();
      const int64_t decodes =
          std::count_if(step.begin(), step.end(), [](const ScheduledSeq& s) { return !s.prefill; });
      if (!step.empty()) step_costs.observe(decodes, step_tokens - decodes, agreed_s);
    }
    tokens.assign(shared.begin(), shared.end());
    std::vector<const float*> logit_rows;
    if (options_.save_logits && last)
      for (size_t i = 0; i < step.size(); ++i) logit_rows.push_back(&logits[i * static_cast<size_t>(V)]);
    if (options_.observer != nullptr) options_.observer->step_end();
    const double now = seconds_since(t0);
    scheduler.complete_step(step, tokens, logit_rows, V, now, config_.eos_token_ids);
    for (const ScheduledSeq& s : step) {
      if (s.seq->state != Sequence::State::Finished) continue;
      for (Sequence* follower : arrivals.followers_of(*s.seq)) {  // a closed loop's next request
        follower->arrival_s = now;
        scheduler.arrive(follower);
      }
    }
    generated += totals[3] / per_replica;

    StepRecord rec;
    rec.batch_size = static_cast<int32_t>(totals[0] / per_replica);
    rec.num_tokens = static_cast<int32_t>(totals[1] / per_replica);
    rec.is_prefill = totals[2] > 0;
    rec.seconds = seconds_since(step_start);
    (rec.is_prefill ? report.prefill_comm_wait_s : report.decode_comm_wait_s) +=
        comm_blocked_seconds() - blocked_at_start;
    rec.prefill_budget = static_cast<int32_t>(scheduler.prefill_budget());
    report.steps.push_back(rec);
    windows.end_of_step(static_cast<int64_t>(report.steps.size()), read_counts);
    if (seconds_since(last_progress) >= static_cast<double>(options_.progress_every_s)) {
      last_progress = std::chrono::steady_clock::now();
      std::ostringstream os;
      os << "step " << report.steps.size() << ": " << rec.batch_size << " sequences, "
         << scheduler.waiting() << " waiting here, " << generated << " tokens generated, "
         << static_cast<int64_t>(static_cast<double>(generated) / now) << " tok/s";
      log_progress(os.str());
    }
  }
  report.total_seconds = seconds_since(t0);
  windows.finish(static_cast<int64_t>(report.steps.size()), read_counts);
  report.window_counts = windows.counts_by_window();
  report.window_ranges = windows.ranges();
  return report;
}

}  // namespace moetron
