// Rank emulation's per-peer blocks (ModelForward::route_as_peers): peers that route alike send
// this rank the same block, so only each distinct block is packed and the others are copies.
// Copied one peer at a time that is two launches a peer and MoE layer (126 at 64 emulated ranks
// with two distinct tables), which the emulated step then times although no real rank runs
// them. The copies here go by runs: the blocks [p, p + n) repeat the already filled [q, q + n),
// so a pattern that repeats every d peers takes about log2(peers / d) copies.
#pragma once
#include <cstdint>
#include <vector>

namespace moetron {

// A run of peers whose blocks repeat earlier peers' blocks: [first, first + count) gets
// [source, source + count).
struct BlockRun {
  int first = 0, source = 0, count = 0;
};

// alike[p]: the first peer routing as p does (alike[p] <= p, alike[alike[p]] == alike[p]).
// Returns runs covering every peer p with alike[p] != p exactly once, in an order in which each
// run's source is filled (packed, or an earlier run's copy) before the run is copied.
inline std::vector<BlockRun> repeat_runs(const std::vector<int>& alike) {
  std::vector<BlockRun> runs;
  const int peers = static_cast<int>(alike.size());
  for (int p = 0; p < peers;) {
    if (alike[p] == p) {
      ++p;
      continue;
    }
    BlockRun run{p, alike[p], 1};
    while (p + run.count < peers && run.source + run.count < p &&
           alike[p + run.count] == alike[run.source + run.count])
      ++run.count;
    runs.push_back(run);
    p += run.count;
  }
  return runs;
}

}  // namespace moetron
