// When this replica's requests arrive: at their arrival_s (seconds after the run starts), or,
// for a request that follows another (the prompts file's `after`, a closed loop), when that one
// finishes. Requests that arrive at the start never pass through here.
//
// The engine asks due(now) with a time every rank of the job agreed on (Engine::run), and calls
// followers_of() from the step's results, which every rank of a replica holds alike; so every
// rank moves the same requests into its scheduler at the same step.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <vector>

#include "moetron/engine/scheduler.hpp"

namespace moetron {

class Arrivals {
 public:
  // Marks Pending the sequences that have not arrived at the start (arrival_s > 0, or after >= 0).
  // A followed request must be among `sequences` (requests_for_replica keeps chains together).
  explicit Arrivals(std::vector<Sequence>& sequences);

  // The timed sequences with arrival_s <= now_s not handed out yet, by arrival_s then file order.
  std::vector<Sequence*> due(double now_s);
  // The sequences that follow `finished`; they arrive now (the caller sets their arrival_s).
  std::vector<Sequence*> followers_of(const Sequence& finished);
  // The earliest arrival_s not handed out yet; +infinity when no timed sequence is left.
  double next_arrival_s() const;
  int64_t pending() const { return pending_; }

 private:
  std::vector<Sequence*> timed_;  // by (arrival_s, index)
  size_t next_timed_ = 0;
  std::multimap<int64_t, Sequence*> followers_;  // by the index of the sequence they follow
  int64_t pending_ = 0;
};

}  // namespace moetron
