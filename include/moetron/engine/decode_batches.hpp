// The batch sizes a decode step runs at. A decode-only step of d sequences runs padded to the
// next size of 1, 2, 4, 8, ... (the last is max_batch), so that one recording serves every batch
// up to that size (DecodeGraphs): a batch of 5 costs what one of 8 costs. StepCostModel groups
// step times by the same sizes, so that a bucket's decode time is one padded size's.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace moetron {

// The sizes decode steps are recorded at: 1, 2, 4, ... below max_batch, then max_batch (>= 1).
std::vector<int64_t> padded_decode_batches(int64_t max_batch);

// The bucket of a batch of `decodes`: 0 for none, else 1 + ceil(log2 decodes) (1 | 2 | 3-4 |
// 5-8 | ...), and for decodes <= max_batch the batch runs at padded_decode_batches(max_batch)[
// bucket - 1] (max_batch itself holds every batch above the power of two below it).
size_t decode_bucket(int64_t decodes);

}  // namespace moetron
