// Timing a repeated operation on a backend whose calls may run asynchronously: the host clock
// around a batch of calls that starts and ends with the device idle (Ops::sync), so launch
// queues, the driver's own overheads and the sync's cost are spread over many calls. No device
// events are needed, so the CPU and CUDA backends time alike.
#pragma once
#include <functional>
#include <vector>

#include "moetron/bench/profile.hpp"

namespace moetron {

struct TimingSettings {
  int warmup = 2;                 // batches run and discarded (the first also sizes the batch)
  int reps = 5;                   // batches timed: the median and the 10th/90th percentiles
  double batch_target_s = 5e-4;   // a batch runs at least this long ...
  int max_batch = 100;            // ... with at most this many calls
};

struct TimedWork {
  std::function<void()> call;  // enqueues one repetition
  std::function<void()> wait;  // returns when everything enqueued has finished (Ops::sync)
  // Before each batch, untimed (a barrier, so that a collective's ranks start together).
  std::function<void()> align;
  // Replaces each rank's per-batch times by the group's (the slowest rank's), so that every
  // rank agrees on the batch size and the result; identity when not set.
  std::function<void(std::vector<double>&)> agree;
  // The clock stops when the calls are enqueued, before the wait: the host's cost of a call on
  // a backend whose calls run asynchronously (the wait still ends every batch, untimed).
  bool host_only = false;
};

// Seconds per call. Throws Error when settings are out of range.
Measurement measure(const TimedWork& work, const TimingSettings& settings);

// The median and 10th/90th percentiles (linear between order statistics) of per-call times.
Measurement summarize_times(std::vector<double> seconds);

}  // namespace moetron
