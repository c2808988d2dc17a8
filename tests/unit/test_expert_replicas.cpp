// Redundant experts (parallel/expert_replicas.hpp): the greedy placement on a hand-computed
// example, the slot-id numbering the dispatch and the loader share, the host routing rule, and
// the errors for values that cannot be placed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "moetron/backend/expert_dispatch.hpp"
#include "moetron/core/error.hpp"
#include "moetron/parallel/expert_replicas.hpp"

namespace moetron {
namespace {

// 6 experts over 3 sets ({0,1}, {2,3}, {4,5}); set loads 100, 40, 10. By hand, with R = 2 (one
// spare slot per set): expert 0 (90 tokens) is the hottest and goes to the least-loaded set 2
// (10; set 1 has 40): loads 55, 40, 55. Then expert 0 still has the most tokens per copy (45),
// but its only place, set 1, would reach 70 > 55; experts 2 and 3 (20) could go only to set 0,
// which would reach 65; expert 1 (10) goes to set 1: 50, 45, 55, the busiest unchanged.
// Layer 1 is dense (no loads): no replicas.
const std::vector<int64_t> kLoads = {90, 10, 20, 20, 5, 5, 0, 0, 0, 0, 0, 0};

TEST(ExpertReplicas, HottestExpertsGoToTheLeastLoadedSets) {
  const ExpertReplicas r = place_redundant_experts(kLoads, 2, 6, 3, 2);
  EXPECT_EQ(r.slots, 1);
  EXPECT_EQ(r.slot_width(), 3);
  ASSERT_EQ(r.layers[0].size(), 2u);
  EXPECT_EQ(r.layers[0][0].expert, 0);
  EXPECT_EQ(r.layers[0][0].set, 2);
  EXPECT_EQ(r.layers[0][1].expert, 1);
  EXPECT_EQ(r.layers[0][1].set, 1);
  EXPECT_TRUE(r.layers[1].empty());
}

TEST(ExpertReplicas, NoCopyThatRaisesTheBusiestSet) {
  // 4 experts over 2 sets, loads 100, 10 | 40, 30 (sets 110, 70). A copy of expert 0 would put
  // 50 on set 1 (120), of 2 or 3 20 or 15 on set 0 (130, 125); expert 1's copy gives 105, 75.
  // Then set 1 is full and set 0 can take only experts 2 or 3, which raise it: one replica.
  const ExpertReplicas r = place_redundant_experts({100, 10, 40, 30}, 1, 4, 2, 2);
  ASSERT_EQ(r.layers[0].size(), 1u);
  EXPECT_EQ(r.layers[0][0].expert, 1);
  EXPECT_EQ(r.layers[0][0].set, 1);
  EXPECT_EQ(replica_placement_record(r, 2), (std::vector<int64_t>{1, 1, -1, -1}));
  // Even loads: every copy would raise a set above the others, so none is placed.
  EXPECT_TRUE(place_redundant_experts({5, 5, 5, 5}, 1, 4, 2, 2).layers[0].empty());
}

TEST(ExpertReplicas, SlotIdsOfCopiesAndTheRoutingTable) {
  const ExpertReplicas r = place_redundant_experts(kLoads, 2, 6, 3, 2);
  // Width 3 per set: own experts first, the replica slot last.
  const std::vector<std::vector<int32_t>> copies = r.copies_by_expert(0);
  EXPECT_EQ(copies[0], (std::vector<int32_t>{0, 8}));
  EXPECT_EQ(copies[1], (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(copies[3], (std::vector<int32_t>{4}));
  EXPECT_EQ(copies[5], (std::vector<int32_t>{7}));
  const std::vector<int32_t> table = replica_route_table(r, 0);
  ASSERT_EQ(table.size(), 6u * 4u);
  EXPECT_EQ(std::vector<int32_t>(table.begin(), table.begin() + 4), (std::vector<int32_t>{2, 0, 8, -1}));
  EXPECT_EQ(std::vector<int32_t>(table.begin() + 4, table.begin() + 8), (std::vector<int32_t>{2, 1, 5, -1}));
  EXPECT_EQ(std::vector<int32_t>(table.begin() + 8, table.begin() + 12), (std::vector<int32_t>{1, 3, -1, -1}));
  // Token t's slot of experts 0 and 1 goes to copy t % 2; expert 2 stays home; -1 stays -1.
  const std::vector<int32_t> ids = {0, 1, 0, -1, 2, 1, 0, 1};  // 4 tokens x top-2
  std::vector<int32_t> out(ids.size());
  route_to_replicas_host(ids.data(), 4, 2, table.data(), 6, 4, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{0, 1, 8, -1, 3, 1, 8, 5}));
  // What the ranks of each set load: set 2's first slot id is 6, and its copy of expert 0.
  const ExpertCopies held = copies_held(r, 2);
  EXPECT_EQ(held.first_id, 6);
  EXPECT_EQ(held.of_layer(0), (std::vector<int64_t>{0}));
  EXPECT_TRUE(held.of_layer(1).empty());
  EXPECT_EQ(copies_held(r, 1).of_layer(0), (std::vector<int64_t>{1}));
  EXPECT_EQ(copies_held(r, 0).of_layer(0), (std::vector<int64_t>{}));
}

// Data-parallel replica d starts each row at copy d % n: at batch 1 (every token is t = 0) the
// replicas' tokens reach different copies of a hot expert, where without the rotation they
// would all go to its first copy and leave the others idle.
TEST(ExpertReplicas, EachReplicaStartsAtAnotherCopy) {
  const ExpertReplicas r = place_redundant_experts(kLoads, 2, 6, 3, 2);
  const std::vector<int32_t> ids = {0, 1};  // one token, top-2: the two replicated experts
  std::vector<int32_t> by_replica[4];
  for (int64_t d = 0; d < 4; ++d) {
    const std::vector<int32_t> table = replica_route_table(r, 0, d);
    if (d == 1 || d == 3) {  // odd replicas: the copy lists of two copies swap, one copy stays
      EXPECT_EQ(std::vector<int32_t>(table.begin(), table.begin() + 4), (std::vector<int32_t>{2, 8, 0, -1}));
      EXPECT_EQ(std::vector<int32_t>(table.begin() + 8, table.begin() + 12), (std::vector<int32_t>{1, 3, -1, -1}));
    }
    by_replica[d].resize(2);
    route_to_replicas_host(ids.data(), 1, 2, table.data(), 6, 4, by_replica[d].data());
  }
  EXPECT_EQ(by_replica[0], (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(by_replica[1], (std::vector<int32_t>{8, 5}));
  EXPECT_EQ(by_replica[2], by_replica[0]);
  EXPECT_EQ(by_replica[3], by_replica[1]);
  EXPECT_THROW(replica_route_table(r, 0, -1), Error);
}

TEST(ExpertReplicas, PlacementRecordForTheResultsFile) {
  const ExpertReplicas r = place_redundant_experts(kLoads, 2, 6, 3, 2);
  EXPECT_EQ(replica_placement_record(r, 2), (std::vector<int64_t>{0, 2, 1, 1, -1, -1, -1, -1}));
}

TEST(ExpertReplicas, SparesPerSetRoundUp) {
  EXPECT_EQ(replica_slots_per_set(0, 4), 0);
  EXPECT_EQ(replica_slots_per_set(1, 4), 1);
  EXPECT_EQ(replica_slots_per_set(4, 4), 1);
  EXPECT_EQ(replica_slots_per_set(5, 4), 2);
}

TEST(ExpertReplicas, RefusesMoreReplicasThanExperts) {
  try {
    place_redundant_experts(kLoads, 2, 6, 3, 7);
    FAIL() << "7 replicas of 6 experts were placed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--redundant-experts 7"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moetron
