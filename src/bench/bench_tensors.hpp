// What the benchmarks share: device tensors with data, and timing one Ops call repeatedly with
// its temporaries released after each call (so a thousand calls need one call's scratch).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/bench/timing.hpp"

namespace moetron::bench_detail {

// A tensor of `dtype` (F32 or BF16) with pseudo-random values in [-0.5, 0.5): GPUs draw less power
// (and clock higher) on zeros, so zeros would time too fast. A block of up to 2^20 values is
// uploaded once and copied on the device over the rest, so gigabytes fill in milliseconds.
Tensor random_tensor(Ops& ops, DType dtype, std::vector<int64_t> shape, uint64_t seed);
Tensor int32_tensor(Ops& ops, const std::vector<int32_t>& values, std::vector<int64_t> shape);
Tensor float32_tensor(Ops& ops, const std::vector<float>& values, std::vector<int64_t> shape);
// The first `count` elements of `t`, viewed as [count / cols, cols] (cols 0: one dimension).
Tensor leading(const Tensor& t, int64_t count, int64_t cols = 0);

// Times `call` on `ops`: each call's temporaries are released after it; waits are Ops::sync.
Measurement time_ops_call(Ops& ops, const std::function<void()>& call, const TimingSettings& settings);
// The host's time to enqueue one call (TimedWork::host_only): meaningful where calls run
// asynchronously; at most settings.max_batch calls a batch.
Measurement time_ops_enqueue(Ops& ops, const std::function<void()>& call, const TimingSettings& settings);

// Times `call` as a recorded step runs it. Launched back to back eagerly, a call shorter than the
// host's launch interval measures that interval, not the call; so where the backend records, a
// call whose eager time is under kRecordBelowS is timed again as kNodesPerRecording nodes of a
// replayed recording (per node: the call plus one node's gap, as in a decode step's graph).
// Longer calls hide the launches and keep their eager time. A call the backend cannot record
// (it waits for the host) keeps its eager time too.
constexpr double kRecordBelowS = 50e-6;
constexpr int kNodesPerRecording = 32;
// Per node of a replayed recording of kNodesPerRecording calls; nullopt where the backend does
// not record or refused a call.
std::optional<Measurement> time_ops_recorded(Ops& ops, const std::function<void()>& call,
                                             const TimingSettings& settings);
Measurement time_ops_call_as_step(Ops& ops, const std::function<void()>& call, const TimingSettings& settings);

}  // namespace moetron::bench_detail
