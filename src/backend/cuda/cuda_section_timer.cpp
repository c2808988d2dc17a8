// CudaOps' timed sections (a rank's expert compute): a pair of CUDA events around each section,
// read back later, so timing never makes the host wait. Pairs whose work has finished are read
// and reused at the next section's start (the engine waits for every step's tokens, so at most
// one step's pairs are outstanding); timed_section_seconds() waits for the rest. A section
// enqueued while the stream is being captured into a graph is not timed: an event recorded in
// a graph would be replayed with it, and replays are not timed here.
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "moetron/backend/cuda_ops.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

struct CudaOps::SectionTimer {
  using Pair = std::pair<cudaEvent_t, cudaEvent_t>;
  std::vector<Pair> pending, spare;
  Pair open{nullptr, nullptr};
  bool skipping = false;  // the open section is being recorded
  double seconds = 0;

  ~SectionTimer() {
    for (const std::vector<Pair>* list : {&pending, &spare})
      for (const Pair& p : *list) {
        cudaEventDestroy(p.first);
        cudaEventDestroy(p.second);
      }
    if (open.first != nullptr) {
      cudaEventDestroy(open.first);
      cudaEventDestroy(open.second);
    }
  }

  // Adds the elapsed time of finished pairs (all of them when `wait`) and keeps them for reuse.
  // Every pair is recorded on the same stream, so they finish in order: the first one still
  // running ends the scan. (Querying every pending pair made each section's start O(layers)
  // CUDA calls; eager decode showed 8.4-12.7 us of host time before each expert call, of which
  // this is a likely part, not measured alone: perf/NOTES.md, seventeenth session.)
  void read(bool wait) {
    size_t done = 0;
    for (; done < pending.size(); ++done) {
      const Pair& p = pending[done];
      if (!wait && cudaEventQuery(p.second) == cudaErrorNotReady) break;
      float ms = 0;
      MOETRON_CHECK(cudaEventSynchronize(p.second) == cudaSuccess &&
                        cudaEventElapsedTime(&ms, p.first, p.second) == cudaSuccess,
                    "timing the expert compute: reading a CUDA event failed");
      seconds += ms * 1e-3;
      spare.push_back(p);
    }
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(done));
  }

  Pair take() {
    if (!spare.empty()) {
      Pair p = spare.back();
      spare.pop_back();
      return p;
    }
    Pair p{nullptr, nullptr};
    MOETRON_CHECK(cudaEventCreate(&p.first) == cudaSuccess && cudaEventCreate(&p.second) == cudaSuccess,
                  "timing the expert compute: cudaEventCreate failed");
    return p;
  }
};

void CudaOps::begin_timed_section() {
  if (!section_timer_) section_timer_ = std::make_shared<SectionTimer>();
  SectionTimer& t = *section_timer_;
  MOETRON_ASSERT(t.open.first == nullptr && !t.skipping);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  MOETRON_CHECK(cudaStreamIsCapturing(stream_, &status) == cudaSuccess, "cudaStreamIsCapturing failed");
  if (status != cudaStreamCaptureStatusNone) {
    t.skipping = true;
    return;
  }
  t.read(/*wait=*/false);
  t.open = t.take();
  MOETRON_CHECK(cudaEventRecord(t.open.first, stream_) == cudaSuccess, "cudaEventRecord failed");
}

void CudaOps::end_timed_section() {
  MOETRON_ASSERT(section_timer_);
  SectionTimer& t = *section_timer_;
  if (t.skipping) {
    t.skipping = false;
    return;
  }
  MOETRON_ASSERT(t.open.first != nullptr);
  MOETRON_CHECK(cudaEventRecord(t.open.second, stream_) == cudaSuccess, "cudaEventRecord failed");
  t.pending.push_back(t.open);
  t.open = {nullptr, nullptr};
}

double CudaOps::timed_section_seconds() {
  if (!section_timer_) return 0;
  section_timer_->read(/*wait=*/true);
  return section_timer_->seconds;
}

}  // namespace moetron
