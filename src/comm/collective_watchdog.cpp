#include "moetron/comm/collective_watchdog.hpp"

#include <algorithm>
#include <chrono>
#include <list>
#include <map>
#include <thread>

#include "moetron/comm/mpi_runtime.hpp"

namespace moetron {
namespace {

using Clock = std::chrono::steady_clock;

// Most waits end within a millisecond. Poll without pause for the first microseconds (a peer
// already there answers within them), then yield the core between polls (ranks may outnumber
// cores, and the rank we wait for may need this one), as MPI's own blocking calls do. Only after
// 50 ms sleep, doubling up to a millisecond, so an idle rank costs little CPU. The yielding phase
// is long because a large transfer advances only while both ends poll: without a single-copy
// path (CMA refused, as in containers) shared memory moves it in small fragments, one per poll,
// and with the sleeping phase starting at 1 ms a 16 MiB all-reduce took 305 ms against 6.7 ms
// under MPI_Wait (2 ranks on the 2-core CI machine, Open MPI 4.1 without CMA; 280-325 against
// 7-9 ms on the H200 machine's host; twenty-ninth session's wait_modes.cpp), and 2 ranks sharing
// an H100 measured ~45 ms a MiB through host buffers.
constexpr auto kBusyPoll = std::chrono::microseconds(20);
constexpr auto kSpin = std::chrono::milliseconds(50);
constexpr auto kFirstPause = std::chrono::microseconds(50);
constexpr auto kLongestPause = std::chrono::milliseconds(1);

enum RollCallTag : int { kAskTag = 1, kAnswerTag = 2 };

// A roll call and its answers carry the asker's number for it, so late answers to an earlier
// roll call are recognised and dropped; `site` is what the sender is waiting in.
struct RollCallMessage {
  int64_t roll_id = 0;
  WaitSite site;
};

struct Outgoing {
  RollCallMessage message;
  MPI_Request request = MPI_REQUEST_NULL;
};

struct WatchdogState {
  WatchdogLimits limits;
  MPI_Comm roll = MPI_COMM_NULL;  // a duplicate of the world: roll calls never meet user traffic
  int rank = 0, size = 1;
  int64_t last_group_id = WaitSite::kUntrackedGroup;
  int64_t roll_calls = 0;
  // Messages still in flight: a stopped rank may never take them, and no send may block on it.
  std::list<Outgoing> outgoing;
  TimeoutAction action;
};

WatchdogState& state() {
  static WatchdogState s;
  return s;
}

std::chrono::duration<double> seconds(double s) { return std::chrono::duration<double>(s); }

// "MPI_Test (recv from rank 1 (world)) failed: ...": the operation, not only the MPI call.
void check_site(int rc, const char* call, const WaitSite& site) {
  if (rc != MPI_SUCCESS) check_mpi(rc, (std::string(call) + " (" + describe(site) + ")").c_str());
}

bool done(MPI_Request& request, MPI_Status* status, const WaitSite& site) {
  int flag = 0;
  check_site(MPI_Test(&request, &flag, status), "MPI_Test", site);
  return flag != 0;
}

// Sends without ever blocking: the message stays in `outgoing` until MPI has taken it.
void post(int to, int tag, const RollCallMessage& message) {
  WatchdogState& s = state();
  s.outgoing.remove_if([](Outgoing& o) {
    int done = 0;
    check_mpi(MPI_Test(&o.request, &done, MPI_STATUS_IGNORE), "MPI_Test (roll call)");
    return done != 0;
  });
  s.outgoing.push_back({message, MPI_REQUEST_NULL});
  Outgoing& o = s.outgoing.back();
  check_mpi(MPI_Isend(&o.message, sizeof o.message, MPI_BYTE, to, tag, s.roll, &o.request),
            "MPI_Isend (roll call)");
}

// Takes one pending message with `tag` from any rank; false when there is none.
bool take(int tag, RollCallMessage& message, int& from) {
  WatchdogState& s = state();
  int pending = 0;
  MPI_Status status;
  check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, tag, s.roll, &pending, &status), "MPI_Iprobe (roll call)");
  if (!pending) return false;
  from = status.MPI_SOURCE;
  check_mpi(MPI_Recv(&message, sizeof message, MPI_BYTE, from, tag, s.roll, MPI_STATUS_IGNORE),
            "MPI_Recv (roll call)");
  return true;
}

// Tells every rank that asks what this rank is waiting in.
void answer_roll_calls(const WaitSite& site) {
  RollCallMessage ask;
  int from = 0;
  while (take(kAskTag, ask, from)) post(from, kAnswerTag, {ask.roll_id, site});
}

// Asks every rank what it waits in and collects the answers for up to the grace period, or
// until every expected rank has answered. True if the request completed meanwhile (the late
// rank arrived after all): then there is nothing to judge.
bool hold_roll_call(MPI_Request& request, MPI_Status* status, const WaitSite& site,
                    const std::vector<int>& members, std::map<int, WaitSite>& answers) {
  WatchdogState& s = state();
  const int64_t roll_id = ++s.roll_calls;
  for (int r = 0; r < s.size; ++r)
    if (r != s.rank) post(r, kAskTag, {roll_id, site});
  const std::vector<int> expected = expected_ranks(site, s.rank, members);
  const auto unanswered = [&] {
    return std::any_of(expected.begin(), expected.end(), [&](int r) { return answers.count(r) == 0; });
  };
  const auto end = Clock::now() + seconds(std::min(s.limits.grace_s, s.limits.timeout_s));
  while (unanswered() && Clock::now() < end) {
    if (done(request, status, site)) return true;
    answer_roll_calls(site);
    RollCallMessage answer;
    int from = 0;
    while (take(kAnswerTag, answer, from))
      if (answer.roll_id == roll_id) answers[from] = answer.site;
    std::this_thread::sleep_for(kFirstPause);
  }
  return false;
}

void on_timeout(const RollCallVerdict& verdict) {
  const TimeoutAction& action = state().action;
  if (action) return action(verdict);
  abort_job(verdict.message);
}

}  // namespace

void set_watchdog_limits(const WatchdogLimits& limits) { state().limits = limits; }

WatchdogLimits watchdog_limits() { return state().limits; }

void set_timeout_action(TimeoutAction action) { state().action = std::move(action); }

void start_watchdog() {
  WatchdogState& s = state();
  if (s.roll != MPI_COMM_NULL) return;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &s.roll), "MPI_Comm_dup (roll call)");
  check_mpi(MPI_Comm_set_errhandler(s.roll, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler (roll call)");
  check_mpi(MPI_Comm_rank(s.roll, &s.rank), "MPI_Comm_rank (roll call)");
  check_mpi(MPI_Comm_size(s.roll, &s.size), "MPI_Comm_size (roll call)");
}

void stop_watchdog() {
  WatchdogState& s = state();
  if (s.roll == MPI_COMM_NULL) return;
  // Called on the way to MPI_Finalize, where nothing can be reported: a send that a peer never
  // took is let go, and a failing free changes nothing the user can act on.
  for (Outgoing& o : s.outgoing)
    if (o.request != MPI_REQUEST_NULL) MPI_Request_free(&o.request);
  s.outgoing.clear();
  MPI_Comm_free(&s.roll);
  s.roll = MPI_COMM_NULL;
}

void wait_for_request(MPI_Request& request, MPI_Status* status, const WaitSite& site,
                      const std::vector<int>& members) {
  const WatchdogState& s = state();
  if (s.roll == MPI_COMM_NULL || s.limits.timeout_s <= 0) {
    check_site(MPI_Wait(&request, status), "MPI_Wait", site);
    return;
  }
  const auto start = Clock::now();
  const auto deadline = start + seconds(s.limits.timeout_s);
  bool watching = true;
  auto pause = std::chrono::duration_cast<std::chrono::microseconds>(kFirstPause);
  while (!done(request, status, site)) {
    const auto now = Clock::now();
    if (now - start < kBusyPoll) continue;
    if (now - start < kSpin) {
      std::this_thread::yield();
      continue;
    }
    answer_roll_calls(site);
    if (watching && now >= deadline) {
      std::map<int, WaitSite> answers;
      if (hold_roll_call(request, status, site, members, answers)) return;
      on_timeout(judge_roll_call(site, s.rank, members, answers, s.limits.timeout_s));
      watching = false;  // only a test's action returns: then wait on as MPI_Wait would
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, kLongestPause);
  }
}

std::vector<int> world_ranks_of(MPI_Comm comm) {
  MPI_Group group, world;
  int n = 0;
  check_mpi(MPI_Comm_group(comm, &group), "MPI_Comm_group");
  check_mpi(MPI_Comm_group(MPI_COMM_WORLD, &world), "MPI_Comm_group (world)");
  check_mpi(MPI_Group_size(group, &n), "MPI_Group_size");
  std::vector<int> local(static_cast<size_t>(n)), global(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) local[static_cast<size_t>(r)] = r;
  check_mpi(MPI_Group_translate_ranks(group, n, local.data(), world, global.data()),
            "MPI_Group_translate_ranks");
  check_mpi(MPI_Group_free(&group), "MPI_Group_free");
  check_mpi(MPI_Group_free(&world), "MPI_Group_free (world)");
  return global;
}

int64_t agree_group_id(MPI_Comm comm) {
  WatchdogState& s = state();
  const int64_t proposal = s.last_group_id + 1;
  int64_t agreed = 0;
  check_mpi(MPI_Allreduce(&proposal, &agreed, 1, MPI_INT64_T, MPI_MAX, comm), "MPI_Allreduce (group id)");
  s.last_group_id = agreed;
  return agreed;
}

}  // namespace moetron
