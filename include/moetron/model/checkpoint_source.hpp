// Where weights come from: a safetensors checkpoint directory, or deterministic random values
// (`--load-format dummy`, for shapes whose checkpoint would not fit the disk).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "moetron/model/weights.hpp"

namespace moetron {

// Reads the slices load_weights announces (WeightSource::expect) ahead, on a reader thread with
// pread (moetron/model/slice_reader.hpp); other reads copy from the memory-mapped files. Either
// way only the requested slices are read (a column slice of narrow rows: their covering span),
// so each rank reads only its shard.
std::unique_ptr<WeightSource> open_checkpoint_source(const std::string& dir);

// Generates each element from (seed, tensor name, element index), so any rank can produce any
// slice without the rest; the values equal those `moetron model make` writes for that seed.
std::unique_ptr<WeightSource> make_random_source(uint64_t seed, DType dtype);

}  // namespace moetron
