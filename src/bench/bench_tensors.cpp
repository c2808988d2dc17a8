#include "bench_tensors.hpp"

#include <algorithm>
#include <optional>

#include "moetron/core/error.hpp"

namespace moetron::bench_detail {

Tensor leading(const Tensor& t, int64_t count, int64_t cols) {
  MOETRON_CHECK(count <= t.numel() && (cols == 0 || count % cols == 0),
                "bench: a view of " << count << " elements of " << t.describe());
  Tensor flat = t.reshape({t.numel()}).slice_rows(0, count);
  return cols == 0 ? flat : flat.reshape({count / cols, cols});
}

Tensor random_tensor(Ops& ops, DType dtype, std::vector<int64_t> shape, uint64_t seed) {
  MOETRON_CHECK(dtype == DType::F32 || dtype == DType::BF16, "bench: random values of " << dtype_name(dtype));
  Tensor t = ops.alloc(dtype, std::move(shape));
  const int64_t n = t.numel(), block = std::min<int64_t>(n, 1 << 20);
  std::vector<float> values(static_cast<size_t>(block));
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& v : values) {  // xorshift64: cheap, and enough for timing
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    v = static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f;
  }
  Tensor first = leading(t, block);
  if (dtype == DType::F32) {
    ops.copy_from_host(first, values.data());
  } else {
    std::vector<uint16_t> bf16(values.size());
    std::transform(values.begin(), values.end(), bf16.begin(), float_to_bf16);
    ops.copy_from_host(first, bf16.data());
  }
  Tensor flat = t.reshape({n});
  for (int64_t at = block; at < n; at += block) {
    const int64_t count = std::min(block, n - at);
    Tensor dst = flat.slice_rows(at, count);
    ops.copy(leading(first, count), dst);
  }
  return t;
}

Tensor int32_tensor(Ops& ops, const std::vector<int32_t>& values, std::vector<int64_t> shape) {
  Tensor t = ops.alloc(DType::I32, std::move(shape));
  MOETRON_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "bench: " << values.size() << " values for " << t.describe());
  ops.copy_from_host(t, values.data());
  return t;
}

Tensor float32_tensor(Ops& ops, const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor t = ops.alloc(DType::F32, std::move(shape));
  MOETRON_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "bench: " << values.size() << " values for " << t.describe());
  ops.copy_from_host(t, values.data());
  return t;
}

namespace {

// Calls of `call`, each releasing its temporaries, timed to the device's end or (host_only) to
// the last one enqueued.
Measurement time_calls(Ops& ops, const std::function<void()>& call, const TimingSettings& settings, bool host_only) {
  TimedWork work;
  work.call = [&] {
    const size_t mark = ops.temp_mark();
    call();
    ops.temp_release(mark);
  };
  work.wait = [&] { ops.sync(); };
  work.host_only = host_only;
  return measure(work, settings);
}

}  // namespace

Measurement time_ops_call(Ops& ops, const std::function<void()>& call, const TimingSettings& settings) {
  return time_calls(ops, call, settings, false);
}

Measurement time_ops_enqueue(Ops& ops, const std::function<void()>& call, const TimingSettings& settings) {
  return time_calls(ops, call, settings, true);
}

namespace {

// The recording of kNodesPerRecording calls, or -1 when the backend refused one of them. The
// calls' temporaries are not released between them: the caller keeps them while it replays.
int record_calls(Ops& ops, const std::function<void()>& call) {
  ops.begin_recording();
  try {
    for (int i = 0; i < kNodesPerRecording; ++i) call();
    return ops.end_recording();
  } catch (const Error&) {
    try {
      ops.end_recording();  // ends the broken capture; its own error is the same refusal
    } catch (const Error&) {
    }
    return -1;
  }
}

}  // namespace

std::optional<Measurement> time_ops_recorded(Ops& ops, const std::function<void()>& call,
                                             const TimingSettings& settings) {
  if (!ops.can_record()) return std::nullopt;
  const size_t mark = ops.temp_mark();
  const int recording = record_calls(ops, call);
  if (recording < 0) {
    ops.temp_release(mark);
    return std::nullopt;
  }
  TimingSettings per_replay = settings;
  per_replay.max_batch = std::max(1, settings.max_batch / kNodesPerRecording);
  TimedWork work;
  work.call = [&] { ops.replay(recording); };
  work.wait = [&] { ops.sync(); };
  Measurement m = measure(work, per_replay);
  ops.temp_release(mark);
  for (double* t : {&m.median_s, &m.p10_s, &m.p90_s}) *t /= kNodesPerRecording;
  return m;
}

Measurement time_ops_call_as_step(Ops& ops, const std::function<void()>& call, const TimingSettings& settings) {
  const Measurement eager = time_ops_call(ops, call, settings);  // also warms workspaces and caches
  if (eager.median_s >= kRecordBelowS) return eager;
  return time_ops_recorded(ops, call, settings).value_or(eager);
}

}  // namespace moetron::bench_detail
