#include "moetron/backend/gpu_activity.hpp"

#include <cupti.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"

namespace moetron {
namespace {

const CUpti_ActivityKind kTracedKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
                                           CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET};
// Each buffer holds tens of thousands of records; CUPTI asks for another when one fills.
constexpr size_t kBufferBytes = 8u << 20;
constexpr size_t kBufferAlign = 8;  // CUPTI requires 8-byte aligned activity buffers

std::string cupti_error_text(CUptiResult r) {
  const char* text = nullptr;
  if (cuptiGetResultString(r, &text) != CUPTI_SUCCESS || text == nullptr) return "unknown CUPTI error";
  return text;
}

void check_cupti(CUptiResult r, const char* call) {
  MOETRON_CHECK(r == CUPTI_SUCCESS,
                "--measure-gpu-idle: CUPTI " << call << " failed: " << cupti_error_text(r)
                                             << " (is another profiler attached?)");
}

// What CUPTI's callbacks (on its own thread, or inside a flush) hand back. They may not throw
// into CUPTI, so an error is kept here and raised by the next collect().
struct Collected {
  std::mutex mutex;
  std::vector<GpuInterval> intervals;
  std::vector<std::string> names;           // GpuInterval::name indexes this
  std::map<std::string, int32_t> name_ids;  // and this finds a name's index
  int64_t untimed = 0;
  size_t dropped = 0;
  std::string error;
};
Collected g_collected;
std::atomic<bool> g_active{false};

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(kBufferAlign, kBufferBytes));
  *size = *buffer != nullptr ? kBufferBytes : 0;  // no buffer: CUPTI drops records (counted)
  *max_records = 0;                                // as many as fit
}

// The name table's index of `name` (the caller holds g_collected.mutex).
int32_t name_id(const std::string& name) {
  auto it = g_collected.name_ids.find(name);
  if (it != g_collected.name_ids.end()) return it->second;
  const auto id = static_cast<int32_t>(g_collected.names.size());
  g_collected.names.push_back(name);
  g_collected.name_ids.emplace(name, id);
  return id;
}

// One activity record as an interval and its name ("" for work without a record we keep).
void add_record(const CUpti_Activity* record, std::vector<std::pair<GpuInterval, std::string>>& out,
                int64_t& untimed) {
  uint64_t start = 0, end = 0;
  bool kernel = false;
  std::string name;
  switch (record->kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
      start = k->start;
      end = k->end;
      kernel = true;
      name = short_kernel_name(k->name != nullptr ? k->name : "?");
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
      start = m->start;
      end = m->end;
      name = "[memcpy]";
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
      start = m->start;
      end = m->end;
      name = "[memset]";
      break;
    }
    default:
      return;
  }
  if (start == 0 && end == 0) {  // CUPTI's sign that it could not time this one
    ++untimed;
    return;
  }
  out.push_back({GpuInterval{start, end, kernel, -1}, std::move(name)});
}

void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream, uint8_t* buffer, size_t /*size*/,
                               size_t valid_bytes) {
  std::vector<std::pair<GpuInterval, std::string>> parsed;
  int64_t untimed = 0;
  std::string error;
  CUpti_Activity* record = nullptr;
  while (true) {
    const CUptiResult r = cuptiActivityGetNextRecord(buffer, valid_bytes, &record);
    if (r == CUPTI_ERROR_MAX_LIMIT_REACHED) break;  // the end of the buffer
    if (r != CUPTI_SUCCESS) {
      error = "cuptiActivityGetNextRecord: " + cupti_error_text(r);
      break;
    }
    add_record(record, parsed, untimed);
  }
  size_t dropped = 0;
  const CUptiResult dr = cuptiActivityGetNumDroppedRecords(context, stream, &dropped);
  if (dr != CUPTI_SUCCESS && error.empty())
    error = "cuptiActivityGetNumDroppedRecords: " + cupti_error_text(dr);
  std::free(buffer);

  std::lock_guard<std::mutex> lock(g_collected.mutex);
  for (auto& [interval, name] : parsed) {
    interval.name = name_id(name);
    g_collected.intervals.push_back(interval);
  }
  g_collected.untimed += untimed;
  g_collected.dropped += dropped;
  if (g_collected.error.empty()) g_collected.error = error;
}

}  // namespace

GpuActivity::GpuActivity() {
  MOETRON_CHECK(!g_active.exchange(true), "--measure-gpu-idle: GPU activity is already being traced");
  {
    std::lock_guard<std::mutex> lock(g_collected.mutex);
    g_collected.intervals.clear();
    g_collected.names.clear();
    g_collected.name_ids.clear();
    g_collected.untimed = 0;
    g_collected.dropped = 0;
    g_collected.error.clear();
  }
  try {
    check_cupti(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed),
                "cuptiActivityRegisterCallbacks");
    for (CUpti_ActivityKind kind : kTracedKinds) check_cupti(cuptiActivityEnable(kind), "cuptiActivityEnable");
  } catch (...) {
    for (CUpti_ActivityKind kind : kTracedKinds) cuptiActivityDisable(kind);
    g_active = false;
    throw;
  }
}

GpuActivity::~GpuActivity() {
  // Stop tracing and let CUPTI return (and the callback free) every buffer; no throwing here.
  for (CUpti_ActivityKind kind : kTracedKinds) {
    const CUptiResult r = cuptiActivityDisable(kind);
    if (r != CUPTI_SUCCESS) LOG_WARN("CUPTI cuptiActivityDisable: " << cupti_error_text(r));
  }
  const CUptiResult r = cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  if (r != CUPTI_SUCCESS) LOG_WARN("CUPTI cuptiActivityFlushAll: " << cupti_error_text(r));
  g_active = false;
}

uint64_t GpuActivity::now_ns() {
  uint64_t t = 0;
  check_cupti(cuptiGetTimestamp(&t), "cuptiGetTimestamp");
  return t;
}

std::vector<GpuInterval> GpuActivity::collect() {
  // Forced: also the buffers that are not full yet.
  check_cupti(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
  std::lock_guard<std::mutex> lock(g_collected.mutex);
  MOETRON_CHECK(g_collected.error.empty(), "--measure-gpu-idle: CUPTI " << g_collected.error);
  MOETRON_CHECK(g_collected.dropped == 0,
                "--measure-gpu-idle: CUPTI dropped " << g_collected.dropped
                                                     << " activity records: the measurement is incomplete");
  std::vector<GpuInterval> out;
  out.swap(g_collected.intervals);
  return out;
}

std::vector<std::string> GpuActivity::names() const {
  std::lock_guard<std::mutex> lock(g_collected.mutex);
  return g_collected.names;
}

int64_t GpuActivity::untimed_records() const {
  std::lock_guard<std::mutex> lock(g_collected.mutex);
  return g_collected.untimed;
}

void GpuIdleObserver::step_begin(bool decode_only) {
  MOETRON_ASSERT(steps_.empty() || steps_.back().end != 0);
  steps_.push_back({GpuActivity::now_ns(), 0, decode_only});
}

void GpuIdleObserver::step_end() {
  MOETRON_ASSERT(!steps_.empty() && steps_.back().end == 0);
  steps_.back().end = GpuActivity::now_ns();
}

DecodeIdleSummary GpuIdleObserver::summarize() {
  MOETRON_ASSERT(steps_.empty() || steps_.back().end != 0);
  const std::vector<GpuInterval> fresh = activity_.collect();
  recorded_.insert(recorded_.end(), fresh.begin(), fresh.end());
  const DecodeIdleSummary s = summarize_decode_idle(steps_, measure_step_idle(steps_, recorded_));
  if (s.decode_steps_without_activity > 0)
    LOG_WARN("--measure-gpu-idle: " << s.decode_steps_without_activity
                                    << " decode step(s) showed no GPU activity and are left out");
  if (activity_.untimed_records() > 0)
    LOG_WARN("--measure-gpu-idle: CUPTI could not time " << activity_.untimed_records()
                                                         << " GPU activity record(s); they are left out");
  return s;
}

std::vector<std::string> GpuIdleObserver::gap_lines(size_t top) {
  MOETRON_ASSERT(steps_.empty() || steps_.back().end != 0);
  const std::vector<GpuInterval> fresh = activity_.collect();
  recorded_.insert(recorded_.end(), fresh.begin(), fresh.end());
  return format_idle_gaps(decode_idle_gaps(steps_, recorded_), activity_.names(), top);
}

}  // namespace moetron
