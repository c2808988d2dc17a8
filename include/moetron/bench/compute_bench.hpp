// The compute microbenchmarks, written once against Ops so the CPU and CUDA backends run the same
// code: dense GEMMs (Ops::linear) by tokens, the grouped expert GEMM (Ops::moe_experts) by tokens
// per expert and active experts, on each side of the CUDA kernel switch, decode and prefill attention by batch x context, memory-bound
// kernels by tokens, a large device copy (HBM bandwidth), and the gap between kernels launched
// eagerly and, where the backend records graphs, between the nodes of a replayed graph.
#pragma once
#include <functional>
#include <string>

#include "moetron/backend/ops.hpp"
#include "moetron/bench/bench_grid.hpp"
#include "moetron/bench/profile.hpp"
#include "moetron/bench/timing.hpp"
#include "moetron/model/config.hpp"

namespace moetron {

struct ComputeBench {
  const ModelConfig* config = nullptr;
  BenchShapes shapes;
  BenchSizes sizes;
  TimingSettings timing;
  std::function<void(const std::string&)> progress;  // one line per family measured; may be empty
  // Fills tables::kHostStep: the host's bookkeeping of a step, timed with the engine's own
  // functions, so the engine supplies it (engine/host_step_bench.hpp: time_host_step) and the
  // bench does not reach up into the engine. Empty: no kHostStep table (priced at zero).
  std::function<void(Ops&, const ComputeBench&, SeriesTable&)> host_step;
};

// Adds the tables kGemm, kMoeExperts, kMoeExpertsGemv, kAttentionDecode, kAttentionPrefill, kMemoryBound,
// kHbmCopy, kKernelGap, kAttentionInputs, kSampling, kHostStep when bench.host_step is set, and
// kLaunchCost where the backend's calls run asynchronously (Ops::can_record), to `profile`.
void run_compute_benchmarks(Ops& ops, const ComputeBench& bench, HardwareProfile& profile);

// The kLaunchCost family alone: one row a LaunchFamily, each the host's time to enqueue a call.
// run_compute_benchmarks runs it only where calls are asynchronous; on a synchronous backend a
// call's enqueue is its whole work (what tests can run anywhere).
void launch_cost_benchmarks(Ops& ops, const ComputeBench& bench, SeriesTable& table);

}  // namespace moetron
