#include "moetron/bench/timing.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "moetron/core/error.hpp"

namespace moetron {

namespace {

double percentile(const std::vector<double>& sorted, double q) {
  const double at = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(at), hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (at - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

// Seconds for `calls` calls, started and finished with the device idle.
double time_batch(const TimedWork& w, int calls) {
  if (w.align) w.align();
  w.wait();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) w.call();
  const auto enqueued = std::chrono::steady_clock::now();
  w.wait();
  const auto end = w.host_only ? enqueued : std::chrono::steady_clock::now();
  return std::chrono::duration<double>(end - start).count();
}

void agree(const TimedWork& w, std::vector<double>& values) {
  if (w.agree) w.agree(values);
}

}  // namespace

Measurement summarize_times(std::vector<double> seconds) {
  MOETRON_CHECK(!seconds.empty(), "summarize_times: no times");
  std::sort(seconds.begin(), seconds.end());
  return {percentile(seconds, 0.5), percentile(seconds, 0.1), percentile(seconds, 0.9)};
}

Measurement measure(const TimedWork& w, const TimingSettings& s) {
  MOETRON_CHECK(s.reps >= 1 && s.warmup >= 0 && s.max_batch >= 1 && s.batch_target_s >= 0,
                "timing settings out of range (reps " << s.reps << ", warmup " << s.warmup << ")");
  std::vector<double> first{time_batch(w, 1)};  // also the first warm-up batch
  agree(w, first);
  const double per_call = std::max(first[0], 1e-9);
  const int calls = static_cast<int>(std::clamp(std::ceil(s.batch_target_s / per_call), 1.0,
                                                static_cast<double>(s.max_batch)));
  for (int i = 1; i < s.warmup; ++i) time_batch(w, calls);
  std::vector<double> per_call_times;
  for (int i = 0; i < s.reps; ++i) per_call_times.push_back(time_batch(w, calls) / calls);
  agree(w, per_call_times);
  return summarize_times(per_call_times);
}

}  // namespace moetron
