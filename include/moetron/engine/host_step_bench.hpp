// The host's bookkeeping of a step, timed with the engine's own functions for the bootstrap's
// profile (tables::kHostStep). It lives in the engine, not in bench/, because it drives the
// engine's types (Sequence, build_batch_layout); `moetron bench` hands it to the compute
// benchmarks as ComputeBench::host_step.
#pragma once
#include "moetron/backend/ops.hpp"
#include "moetron/bench/compute_bench.hpp"
#include "moetron/bench/profile.hpp"

namespace moetron {

void time_host_step(Ops& ops, const ComputeBench& bench, SeriesTable& table);

}  // namespace moetron
