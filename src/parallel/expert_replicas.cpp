#include "moetron/parallel/expert_replicas.hpp"

#include <algorithm>

#include "moetron/core/error.hpp"
#include "moetron/io/results.hpp"

namespace moetron {

std::vector<int64_t> ExpertReplicas::copies_on_set(int64_t layer, int64_t set) const {
  std::vector<int64_t> out;
  for (const ReplicaPlace& p : layers.at(static_cast<size_t>(layer)))
    if (p.set == set) out.push_back(p.expert);
  return out;
}

std::vector<std::vector<int32_t>> ExpertReplicas::copies_by_expert(int64_t layer) const {
  const int64_t size = set_size(), width = slot_width();
  std::vector<std::vector<int32_t>> copies(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e)
    copies[static_cast<size_t>(e)].push_back(static_cast<int32_t>(e / size * width + e % size));
  std::vector<int64_t> used(static_cast<size_t>(sets), 0);  // replica slots taken per set
  for (const ReplicaPlace& p : layers.at(static_cast<size_t>(layer))) {
    const int64_t slot = p.set * width + size + used[static_cast<size_t>(p.set)]++;
    copies[static_cast<size_t>(p.expert)].push_back(static_cast<int32_t>(slot));
  }
  return copies;
}

void check_redundant_experts(int64_t redundant, const std::string& plan, int64_t ep) {
  MOETRON_CHECK(redundant == 0 || ep > 1,
                "--redundant-experts " << redundant << ": the plan " << plan
                                       << " has ep=1, so every rank already holds every expert; use a plan with ep > 1");
}

namespace {

// One layer's greedy placement (see place_redundant_experts).
class LayerPlacement {
 public:
  LayerPlacement(const int64_t* load, int64_t experts, int64_t sets, int64_t slots)
      : load_(load), experts_(experts), sets_(sets), copies_(static_cast<size_t>(experts), 1),
        free_(static_cast<size_t>(sets), slots),
        holds_(static_cast<size_t>(sets * experts), false) {
    for (int64_t e = 0; e < experts; ++e) holds_[static_cast<size_t>(e / (experts / sets) * experts + e)] = true;
  }

  // Places the next replica; false when no copy would leave the busiest set's load as it is or lower.
  bool place_next(std::vector<ReplicaPlace>& placed) {
    const double busiest = max_set_load(-1, -1);
    for (int64_t e : hottest_first()) {
      int64_t best = -1;
      for (int64_t s = 0; s < sets_; ++s)
        if (free_[static_cast<size_t>(s)] > 0 && !holds(s, e) && (best < 0 || set_load(s, -1, -1) < set_load(best, -1, -1)))
          best = s;
      if (best < 0 || max_set_load(e, best) > busiest) continue;
      holds_[static_cast<size_t>(best * experts_ + e)] = true;
      --free_[static_cast<size_t>(best)];
      ++copies_[static_cast<size_t>(e)];
      placed.push_back({e, best});
      return true;
    }
    return false;
  }

 private:
  bool holds(int64_t s, int64_t e) const { return holds_[static_cast<size_t>(s * experts_ + e)]; }
  // Expert e's tokens per copy, with one more copy when e == extra.
  double per_copy(int64_t e, int64_t extra) const {
    return static_cast<double>(load_[e]) / static_cast<double>(copies_[static_cast<size_t>(e)] + (e == extra ? 1 : 0));
  }
  // Set s's load, as if expert `extra` had one more copy on set `on` (-1: as it is).
  double set_load(int64_t s, int64_t extra, int64_t on) const {
    double sum = 0;
    for (int64_t e = 0; e < experts_; ++e)
      if (holds(s, e) || (e == extra && s == on)) sum += per_copy(e, extra);
    return sum;
  }
  double max_set_load(int64_t extra, int64_t on) const {
    double most = 0;
    for (int64_t s = 0; s < sets_; ++s) most = std::max(most, set_load(s, extra, on));
    return most;
  }
  std::vector<int64_t> hottest_first() const {
    std::vector<int64_t> order(static_cast<size_t>(experts_));
    for (int64_t e = 0; e < experts_; ++e) order[static_cast<size_t>(e)] = e;
    std::stable_sort(order.begin(), order.end(), [this](int64_t a, int64_t b) { return per_copy(a, -1) > per_copy(b, -1); });
    return order;
  }

  const int64_t* load_;
  int64_t experts_, sets_;
  std::vector<int64_t> copies_, free_;
  std::vector<bool> holds_;  // [set, expert]: the set holds a copy (its own experts included)
};

std::vector<ReplicaPlace> place_layer(const int64_t* load, int64_t experts, int64_t sets, int64_t slots,
                                      int64_t redundant) {
  LayerPlacement layer(load, experts, sets, slots);
  std::vector<ReplicaPlace> placed;
  while (static_cast<int64_t>(placed.size()) < redundant && layer.place_next(placed)) {
  }
  return placed;
}

}  // namespace

ExpertReplicas place_redundant_experts(const std::vector<int64_t>& loads, int64_t layers,
                                       int64_t experts, int64_t ep, int64_t redundant) {
  MOETRON_CHECK(redundant >= 0 && redundant <= experts,
                "--redundant-experts " << redundant << ": must be between 0 and the model's " << experts
                                       << " experts");
  MOETRON_CHECK(ep > 0 && experts % ep == 0, "redundant experts: ep=" << ep << " does not divide " << experts << " experts");
  MOETRON_ASSERT(static_cast<int64_t>(loads.size()) == layers * experts);
  ExpertReplicas r;
  r.experts = experts;
  r.sets = ep;
  r.slots = replica_slots_per_set(redundant, ep);
  r.layers.resize(static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t* load = loads.data() + l * experts;
    if (std::all_of(load, load + experts, [](int64_t v) { return v == 0; })) continue;
    r.layers[static_cast<size_t>(l)] = place_layer(load, experts, ep, r.slots, redundant);
  }
  return r;
}

ExpertCopies copies_held(const ExpertReplicas& r, int64_t set) {
  ExpertCopies copies;
  if (!r.active()) return copies;
  copies.first_id = set * r.slot_width();
  for (size_t l = 0; l < r.layers.size(); ++l) copies.by_layer.push_back(r.copies_on_set(static_cast<int64_t>(l), set));
  return copies;
}

std::vector<int32_t> replica_route_table(const ExpertReplicas& r, int64_t layer, int64_t rotation) {
  MOETRON_CHECK(rotation >= 0, "replica_route_table: rotation " << rotation << " is negative");
  const int64_t cols = 1 + r.sets;
  std::vector<int32_t> table(static_cast<size_t>(r.experts * cols), -1);
  const std::vector<std::vector<int32_t>> copies = r.copies_by_expert(layer);
  for (int64_t e = 0; e < r.experts; ++e) {
    const std::vector<int32_t>& c = copies[static_cast<size_t>(e)];
    const auto first = table.begin() + e * cols + 1;
    table[static_cast<size_t>(e * cols)] = static_cast<int32_t>(c.size());
    std::copy(c.begin(), c.end(), first);
    if (!c.empty()) std::rotate(first, first + rotation % static_cast<int64_t>(c.size()), first + c.size());
  }
  return table;
}

std::vector<int64_t> replica_placement_record(const ExpertReplicas& r, int64_t redundant) {
  std::vector<int64_t> out(r.layers.size() * static_cast<size_t>(redundant) * 2, -1);
  for (size_t l = 0; l < r.layers.size(); ++l)
    for (size_t i = 0; i < r.layers[l].size(); ++i) {
      out[(l * static_cast<size_t>(redundant) + i) * 2] = r.layers[l][i].expert;
      out[(l * static_cast<size_t>(redundant) + i) * 2 + 1] = r.layers[l][i].set;
    }
  return out;
}

std::vector<int64_t> read_expert_loads(const std::string& path, int64_t layers, int64_t experts) {
  const std::string dataset = "/experts/tokens";
  std::vector<int64_t> dims, loads;
  try {
    dims = read_dims(path, dataset);
    loads = read_int64(path, dataset);
  } catch (const std::exception& e) {
    MOETRON_FAIL("--expert-loads " << path << ": cannot read " << dataset << " (" << e.what() << ")");
  }
  std::string shape = "[";
  for (size_t i = 0; i < dims.size(); ++i) shape += (i ? ", " : "") + std::to_string(dims[i]);
  MOETRON_CHECK(dims.size() == 2 && dims[0] == layers && dims[1] == experts,
                "--expert-loads " << path << ": " << dataset << " has shape " << shape << "], the model has "
                                  << layers << " layers x " << experts << " experts");
  return loads;
}

}  // namespace moetron
