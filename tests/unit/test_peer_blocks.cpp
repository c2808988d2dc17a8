// repeat_runs (moetron/model/peer_blocks.hpp): rank emulation fills alike peers' blocks by runs
// of copies. Every pattern must come out right (each peer ends with its first alike peer's
// block, no copy reads a block not yet filled), and a repeating pattern must take few copies.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "moetron/model/peer_blocks.hpp"

namespace moetron {
namespace {

// Fills blocks as route_as_peers does (distinct blocks packed, then the runs copied in order)
// and checks the result; returns the number of runs.
size_t fill_and_check(const std::vector<int>& alike) {
  const int peers = static_cast<int>(alike.size());
  std::vector<int> block(static_cast<size_t>(peers), -1);  // -1: not filled yet
  for (int p = 0; p < peers; ++p)
    if (alike[p] == p) block[p] = p;
  const std::vector<BlockRun> runs = repeat_runs(alike);
  for (const BlockRun& r : runs) {
    EXPECT_GE(r.count, 1);
    EXPECT_LE(r.source + r.count, r.first) << "a run's source overlaps it";
    for (int i = 0; i < r.count; ++i) {
      EXPECT_NE(block[r.source + i], -1) << "run at " << r.first << " reads an unfilled block";
      EXPECT_EQ(block[r.first + i], -1) << "peer " << r.first + i << " filled twice";
      block[r.first + i] = block[r.source + i];
    }
  }
  for (int p = 0; p < peers; ++p) EXPECT_EQ(block[p], alike[p]) << "peer " << p;
  return runs.size();
}

TEST(PeerBlocks, RepeatingPatternsTakeLogarithmicallyManyCopies) {
  // dp = 64 over two distinct tables (2-copy experts rotated by dp index), tp = 1: A B A B ...
  std::vector<int> two(64);
  for (int p = 0; p < 64; ++p) two[p] = p % 2;
  EXPECT_EQ(fill_and_check(two), 5u);  // 2, 4, 8, 16 and 32 peers a copy, not 62 copies of one
  // tp = 3 inside each of 5 replicas that all route alike: blocks repeat every 3 peers.
  std::vector<int> tp3(15);
  for (int p = 0; p < 15; ++p) tp3[p] = p % 3;
  EXPECT_EQ(fill_and_check(tp3), 3u);  // 3, 6, then the last 3
  // Every peer alike: a doubling from the first block.
  EXPECT_EQ(fill_and_check(std::vector<int>(16, 0)), 4u);
  // No peer alike (or one peer): nothing to copy.
  EXPECT_EQ(fill_and_check({0, 1, 2, 3, 4}), 0u);
  EXPECT_EQ(fill_and_check({0}), 0u);
  EXPECT_EQ(fill_and_check({}), 0u);
}

TEST(PeerBlocks, RandomPatternsFillEveryPeerFromFilledBlocks) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 3000; ++trial) {
    const int peers = 1 + static_cast<int>(rng() % 70);
    const int kinds = 1 + static_cast<int>(rng() % 6);
    std::vector<int> kind(static_cast<size_t>(peers)), alike(static_cast<size_t>(peers));
    for (int p = 0; p < peers; ++p) {
      kind[p] = static_cast<int>(rng() % kinds);
      alike[p] = p;
      for (int q = 0; q < p; ++q)
        if (kind[q] == kind[p]) {
          alike[p] = q;
          break;
        }
    }
    const size_t runs = fill_and_check(alike);
    int repeats = 0;
    for (int p = 0; p < peers; ++p) repeats += alike[p] != p;
    EXPECT_LE(runs, static_cast<size_t>(repeats));
  }
}

}  // namespace
}  // namespace moetron
