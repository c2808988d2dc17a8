#include "moetron/engine/routing_windows.hpp"

#include <algorithm>

#include "moetron/core/error.hpp"

namespace moetron {

int64_t max_routing_windows(int64_t layers, int64_t experts) {
  const int64_t per_window = std::max<int64_t>(layers * experts, 1) * static_cast<int64_t>(sizeof(int64_t));
  return std::max<int64_t>(kRoutingWindowBytes / per_window, 16);
}

RoutingWindows::RoutingWindows(int64_t window_steps, int64_t max_windows)
    : window_(window_steps > 0 ? window_steps : 1), automatic_(window_steps == 0), max_windows_(max_windows) {
  MOETRON_CHECK(window_steps >= 0, "--routing-window must be >= 0 (0: automatic), got " << window_steps);
  MOETRON_CHECK(max_windows >= 2, "routing windows: at most " << max_windows << " windows is too few");
}

void RoutingWindows::end_of_step(int64_t steps_done, const std::function<std::vector<int64_t>()>& read) {
  if (steps_done % window_ != 0) return;
  snapshots_.push_back({steps_done, read()});
  if (automatic_ && static_cast<int64_t>(snapshots_.size()) > max_windows_) merge_pairs();
}

void RoutingWindows::finish(int64_t steps_done, const std::function<std::vector<int64_t>()>& read) {
  const int64_t last = snapshots_.empty() ? 0 : snapshots_.back().end_step;
  if (steps_done > last) snapshots_.push_back({steps_done, read()});
}

// Keeps the snapshots at multiples of twice the window: each kept one closes two old windows.
void RoutingWindows::merge_pairs() {
  window_ *= 2;
  std::vector<Snapshot> kept;
  for (Snapshot& s : snapshots_)
    if (s.end_step % window_ == 0) kept.push_back(std::move(s));
  snapshots_.swap(kept);
}

std::vector<std::pair<int64_t, int64_t>> RoutingWindows::ranges() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  int64_t first = 0;
  for (const Snapshot& s : snapshots_) {
    out.emplace_back(first, s.end_step);
    first = s.end_step;
  }
  return out;
}

std::vector<int64_t> RoutingWindows::counts_by_window() const {
  std::vector<int64_t> out;
  const std::vector<int64_t>* previous = nullptr;
  for (const Snapshot& s : snapshots_) {
    for (size_t i = 0; i < s.cumulative.size(); ++i)
      out.push_back(s.cumulative[i] - (previous ? (*previous)[i] : 0));
    previous = &s.cumulative;
  }
  return out;
}

}  // namespace moetron
