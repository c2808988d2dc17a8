// Routed tokens per window of engine steps: snapshots of the cumulative expert counts, taken at
// window ends, so the counts stay on the device between them (one small copy per window, after a
// step whose tokens the host already waited for) and windows are differences of snapshots.
//
// A fixed window (--routing-window W) takes a snapshot every W steps. The automatic one starts at
// one step and, whenever the snapshots would pass `max_windows`, doubles the window by dropping
// every other snapshot (neighbouring windows merge): the record then holds between max_windows / 2
// and max_windows windows whatever the run's length. The last window may be shorter.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace moetron {

// The default bound of the automatic window: the windows' counts (int64) within kRoutingWindowBytes.
constexpr int64_t kRoutingWindowBytes = int64_t{16} << 20;
// The most windows the automatic window keeps for `layers` x `experts` counts (at least 16).
int64_t max_routing_windows(int64_t layers, int64_t experts);

class RoutingWindows {
 public:
  // window_steps > 0: fixed windows of that many steps; 0: automatic, at most max_windows.
  RoutingWindows(int64_t window_steps, int64_t max_windows);
  // After step `steps_done` - 1 (steps_done steps have run): snapshot if a window ends here.
  // `read` returns the cumulative counts; it is called only then.
  void end_of_step(int64_t steps_done, const std::function<std::vector<int64_t>()>& read);
  // After the last step: closes a partial last window.
  void finish(int64_t steps_done, const std::function<std::vector<int64_t>()>& read);

  int64_t window_steps() const { return window_; }
  // Half-open step ranges [first, end) of the windows, in order.
  std::vector<std::pair<int64_t, int64_t>> ranges() const;
  // Counts routed within each window: windows x (the snapshot's size), window-major.
  std::vector<int64_t> counts_by_window() const;

 private:
  struct Snapshot {
    int64_t end_step;
    std::vector<int64_t> cumulative;
  };
  void merge_pairs();

  int64_t window_;
  bool automatic_;
  int64_t max_windows_;
  std::vector<Snapshot> snapshots_;
};

}  // namespace moetron
