// The watchdog for stuck ranks: every MPI wait of the MPI transport goes through
// wait_for_request, which polls its non-blocking request against a deadline
// (--collective-timeout). A wait that passes it holds a roll call (roll_call.hpp) over a private
// duplicate of the world and ends the job naming the ranks that did not arrive.
//
// Only the main thread calls MPI (MPI_THREAD_FUNNELED), so there is no watchdog thread: the
// waiting rank itself watches the clock, and answers other ranks' roll calls while it waits.
// The hot path is one MPI_Test per poll; nothing extra crosses the network until a deadline.
#pragma once
#include <mpi.h>

#include <functional>
#include <vector>

#include "moetron/comm/roll_call.hpp"

namespace moetron {

constexpr double kDefaultCollectiveTimeoutS = 600;  // far above any step's time
constexpr double kMaxCollectiveTimeoutS = 1e6;      // ~11 days: beyond it, say 0 (off)

struct WatchdogLimits {
  double timeout_s = kDefaultCollectiveTimeoutS;  // 0: wait forever (plain MPI_Wait)
  double grace_s = 1.0;  // how long a roll call waits for answers (at most timeout_s)
};

// Process-wide, like the log level: set once from the command line (and by tests).
void set_watchdog_limits(const WatchdogLimits& limits);
WatchdogLimits watchdog_limits();

// Collective over MPI_COMM_WORLD (MpiRuntime calls them): make and free the roll-call
// communicator. Without a started watchdog, waits are plain MPI_Wait.
void start_watchdog();
void stop_watchdog();

// Completes `request`, the operation `site` on the group whose world ranks are `members`
// (status may be MPI_STATUS_IGNORE). Past the deadline: roll call, then the timeout action.
void wait_for_request(MPI_Request& request, MPI_Status* status, const WaitSite& site,
                      const std::vector<int>& members);

// The world ranks of `comm`'s members, in `comm`'s rank order.
std::vector<int> world_ranks_of(MPI_Comm comm);

// An id for the group `comm` that every member shares and that no other group of this process
// has (collective over `comm`; for WaitSite::group_id).
int64_t agree_group_id(MPI_Comm comm);

// For tests: what a wait past its deadline does instead of ending the job; when it returns,
// the wait goes on without a deadline. An empty function restores the default (abort_job).
using TimeoutAction = std::function<void(const RollCallVerdict&)>;
void set_timeout_action(TimeoutAction action);

}  // namespace moetron
