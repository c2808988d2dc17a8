// Redundant experts (as EPLB does in production engines): R extra copies of a layer's hottest
// experts on the least-loaded expert-parallel sets, so that a hot expert's tokens are split
// between ranks. Only where an expert's rows are computed changes, never how, so the tokens of
// a run are the same with and without replicas.
//
// Numbering. Without replicas, set s holds experts [s * E/ep, (s + 1) * E/ep) and the dispatch
// sends expert e to set e / (E/ep). With R replicas every set gets `slots` = ceil(R / ep) spare
// places per MoE layer after its own experts, and the dispatch works on *slot ids*: set s owns
// slot ids [s * W, (s + 1) * W), W = E/ep + slots; its own expert s*E/ep + i is slot s*W + i and
// its n-th replica of a layer is slot s*W + E/ep + n. The dispatch rule (set = id / W) and the
// grouped expert GEMM (a rank's stack starts at its first slot id) are unchanged.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/model/weights.hpp"  // ExpertCopies

namespace moetron {

// Spare places per set and MoE layer for R replicas over ep sets: ceil(R / ep). The memory check
// counts these on every rank (the most a rank can hold, whatever the loads).
inline int64_t replica_slots_per_set(int64_t redundant, int64_t ep) {
  return ep > 0 ? (redundant + ep - 1) / ep : 0;
}

struct ReplicaPlace {
  int64_t expert = 0;  // the global expert copied
  int64_t set = 0;     // the expert-parallel set holding the copy
};

struct ExpertReplicas {
  int64_t experts = 0, sets = 1, slots = 0;      // E, ep, replica_slots_per_set
  std::vector<std::vector<ReplicaPlace>> layers;  // per layer: its replicas in placement order

  int64_t set_size() const { return experts / sets; }
  int64_t slot_width() const { return set_size() + slots; }  // W, slot ids per set
  bool active() const { return slots > 0; }
  // The experts set `set` holds a copy of in `layer`, in slot order (after its own).
  std::vector<int64_t> copies_on_set(int64_t layer, int64_t set) const;
  // The slot ids of every copy of each expert of `layer` ([E] lists, the home copy first, then
  // the replicas in placement order).
  std::vector<std::vector<int32_t>> copies_by_expert(int64_t layer) const;
};

// Refuses R > 0 under a plan with ep = 1 (every rank already holds every expert), naming
// --redundant-experts and the plan.
void check_redundant_experts(int64_t redundant, const std::string& plan, int64_t ep);

// Places R replicas per layer from loads [layers * E] (routed token-slots, e.g. a previous run's
// /experts/tokens). Per layer, one replica at a time: the expert with the most tokens per copy
// (ties: the lowest id) gets a copy on the set with the least load that has a free slot and no
// copy of it yet (ties: the lowest set), where a set's load is the sum over the copies it holds
// of their expert's tokens divided by its copies (tokens are split evenly between copies) --
// unless that copy would raise the busiest set's load; then the next hottest expert is tried.
// When no copy can be placed without raising it the layer keeps fewer than R (a copy of a light
// set's expert on a heavy set only makes things worse). A layer whose loads are all zero (a
// dense layer) gets none. R must be in [0, E] (Error otherwise, naming --redundant-experts);
// ep must divide E.
ExpertReplicas place_redundant_experts(const std::vector<int64_t>& loads, int64_t layers,
                                       int64_t experts, int64_t ep, int64_t redundant);

// What the ranks of expert set `set` load besides their own experts (none when !r.active()).
ExpertCopies copies_held(const ExpertReplicas& r, int64_t set);

// Per layer, the copy table the forward's Ops::route_to_replicas reads (backend/
// expert_dispatch.hpp): [E, 1 + ep] int32, row e = (copies n, their slot ids, -1 padding).
// Token t of a step goes to the row's copy t % n; `rotation` (a data-parallel replica's index)
// starts each row's list at copy rotation % n, so that replicas with few tokens (batch 1:
// every token is t = 0) send them to different copies instead of all to the first.
std::vector<int32_t> replica_route_table(const ExpertReplicas& r, int64_t layer, int64_t rotation = 0);

// The placement as the results file's /experts/replicas: [layers, R, 2] of (expert, set), rows
// of layers without replicas -1.
std::vector<int64_t> replica_placement_record(const ExpertReplicas& r, int64_t redundant);

// Reads routed loads [layers * E] from a Moetron results file's /experts/tokens; an Error names
// the file and the dataset when it is missing or its shape is not [layers, experts].
std::vector<int64_t> read_expert_loads(const std::string& path, int64_t layers, int64_t experts);

}  // namespace moetron
