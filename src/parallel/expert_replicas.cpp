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
std::vector<ReplicaPlace> place_layer(const int64_t* load, int64_t experts, int64_t sets,
                                      int64_t slots, int64_t redundant) {
  const int64_t size = experts / sets;
  std::vector<std::vector<bool>> holds(static_cast<size_t>(sets), std::vector<bool>(static_cast<size_t>(experts), false));
  std::vector<int64_t> copies(static_cast<size_t>(experts), 1), free_slots(static_cast<size_t>(sets), slots);
  for (int64_t e = 0; e < experts; ++e) holds[static_cast<size_t>(e / size)][static_cast<size_t>(e)] = true;
  const auto per_copy = [&](int64_t e) {
    return static_cast<double>(load[e]) / static_cast<double>(copies[static_cast<size_t>(e)]);
  };
  const auto set_load = [&](int64_t s) {
    double sum = 0;
    for (int64_t e = 0; e < experts; ++e)
      if (holds[static_cast<size_t>(s)][static_cast<size_t>(e)]) sum += per_copy(e);
    return sum;
  };
  std::vector<ReplicaPlace> placed;
  std::vector<bool> exhausted(static_cast<size_t>(experts), false);  // no set can take a copy
  while (static_cast<int64_t>(placed.size()) < redundant) {
    int64_t hot = -1;
    for (int64_t e = 0; e < experts; ++e)
      if (!exhausted[static_cast<size_t>(e)] && (hot < 0 || per_copy(e) > per_copy(hot))) hot = e;
    MOETRON_CHECK(hot >= 0, "--redundant-experts " << redundant << ": no set has room for another copy");
    int64_t best = -1;
    double best_load = 0;
    for (int64_t s = 0; s < sets; ++s) {
      if (free_slots[static_cast<size_t>(s)] == 0 || holds[static_cast<size_t>(s)][static_cast<size_t>(hot)]) continue;
      const double l = set_load(s);
      if (best < 0 || l < best_load) best = s, best_load = l;
    }
    if (best < 0) {
      exhausted[static_cast<size_t>(hot)] = true;
      continue;
    }
    holds[static_cast<size_t>(best)][static_cast<size_t>(hot)] = true;
    --free_slots[static_cast<size_t>(best)];
    ++copies[static_cast<size_t>(hot)];
    placed.push_back({hot, best});
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

std::vector<int32_t> replica_route_table(const ExpertReplicas& r, int64_t layer) {
  const int64_t cols = 1 + r.sets;
  std::vector<int32_t> table(static_cast<size_t>(r.experts * cols), -1);
  const std::vector<std::vector<int32_t>> copies = r.copies_by_expert(layer);
  for (int64_t e = 0; e < r.experts; ++e) {
    const std::vector<int32_t>& c = copies[static_cast<size_t>(e)];
    table[static_cast<size_t>(e * cols)] = static_cast<int32_t>(c.size());
    std::copy(c.begin(), c.end(), table.begin() + e * cols + 1);
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
  std::string shape;
  for (int64_t d : dims) shape += (shape.empty() ? "[" : ", ") + std::to_string(d);
  MOETRON_CHECK(dims.size() == 2 && dims[0] == layers && dims[1] == experts,
                "--expert-loads " << path << ": " << dataset << " has shape " << shape << "], the model has "
                                  << layers << " layers x " << experts << " experts");
  return loads;
}

}  // namespace moetron
