#include "moetron/backend/profiler_window.hpp"

#include <cuda_profiler_api.h>

#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#include "moetron/kernels.hpp"

namespace moetron {

DecodeStepRange parse_decode_step_range(const std::string& text, const char* option) {
  DecodeStepRange r;
  const size_t colon = text.find(':');
  bool ok = colon != std::string::npos;
  try {
    size_t used = 0;
    if (ok) r.first = std::stoll(text.substr(0, colon), &used), ok = used == colon;
    if (ok) r.count = std::stoll(text.substr(colon + 1), &used), ok = used == text.size() - colon - 1;
  } catch (const std::exception&) {
    ok = false;
  }
  MOETRON_CHECK(ok && r.first >= 0 && r.count >= 1,
                option << " '" << text << "': expected FIRST:COUNT, the first decode step (from 0) and how many");
  return r;
}

ProfilerWindow::~ProfilerWindow() {
  if (open_) cudaProfilerStop();  // the run ended inside the window; nothing to report from a destructor
}

void ProfilerWindow::step_begin(bool decode_only) {
  in_decode_ = decode_only;
  if (!decode_only) return;
  if (decode_steps_ == range_.first) {
    CUDA_CHECK(cudaProfilerStart());
    open_ = true;
    LOG_INFO("profiler window open: decode steps " << range_.first << " to " << range_.first + range_.count - 1);
  }
  ++decode_steps_;
}

void ProfilerWindow::step_end() {
  if (open_ && in_decode_ && decode_steps_ == range_.first + range_.count) {
    CUDA_CHECK(cudaProfilerStop());
    open_ = false;
  }
}

}  // namespace moetron
