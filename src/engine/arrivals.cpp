#include "moetron/engine/arrivals.hpp"

#include <algorithm>
#include <set>

#include "moetron/core/error.hpp"

namespace moetron {

Arrivals::Arrivals(std::vector<Sequence>& sequences) {
  std::set<int64_t> here;
  for (const Sequence& s : sequences) here.insert(s.index);
  for (Sequence& s : sequences) {
    if (s.after >= 0) {
      MOETRON_ASSERT(here.count(s.after));  // a chain split over replicas could never arrive
      followers_.emplace(s.after, &s);
    } else if (s.arrival_s > 0) {
      timed_.push_back(&s);
    } else {
      continue;
    }
    s.state = Sequence::State::Pending;
    ++pending_;
  }
  std::stable_sort(timed_.begin(), timed_.end(),
                   [](const Sequence* a, const Sequence* b) { return a->arrival_s < b->arrival_s; });
}

std::vector<Sequence*> Arrivals::due(double now_s) {
  std::vector<Sequence*> out;
  while (next_timed_ < timed_.size() && timed_[next_timed_]->arrival_s <= now_s) out.push_back(timed_[next_timed_++]);
  pending_ -= static_cast<int64_t>(out.size());
  return out;
}

std::vector<Sequence*> Arrivals::followers_of(const Sequence& finished) {
  std::vector<Sequence*> out;
  const auto [begin, end] = followers_.equal_range(finished.index);
  for (auto it = begin; it != end; ++it) out.push_back(it->second);
  followers_.erase(begin, end);
  pending_ -= static_cast<int64_t>(out.size());
  return out;
}

double Arrivals::next_arrival_s() const {
  return next_timed_ < timed_.size() ? timed_[next_timed_]->arrival_s : std::numeric_limits<double>::infinity();
}

}  // namespace moetron
