#include "moetron/model/slice_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "moetron/core/error.hpp"

namespace moetron {
namespace {

// Runs at least this long are read one pread each; shorter ones (a column slice of narrow
// rows) are read as their covering span, at most kSpanBytes at a time, and gathered.
constexpr uint64_t kRunPreadBytes = 64u << 10;
constexpr uint64_t kSpanBytes = 64u << 20;

}  // namespace

SliceReader::SliceReader(std::vector<SliceJob> jobs, Alloc alloc, uint64_t ahead_bytes)
    : jobs_(std::move(jobs)), alloc_(std::move(alloc)), ahead_bytes_(ahead_bytes) {
  thread_ = std::thread([this] { run(); });
}

SliceReader::~SliceReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (const auto& kv : fds_) ::close(kv.second);
}

Tensor SliceReader::next() {
  MOETRON_ASSERT(taken_ < jobs_.size());
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty()) std::rethrow_exception(error_);
  Tensor t = std::move(ready_.front());
  ready_.pop_front();
  ready_bytes_ -= t.nbytes();
  ++taken_;
  lock.unlock();
  cv_.notify_all();
  return t;
}

void SliceReader::run() {
  std::vector<char> scratch;
  try {
    for (const SliceJob& job : jobs_) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || ready_.size() < 2 || ready_bytes_ + job.bytes() <= ahead_bytes_; });
        if (stop_) return;
      }
      Tensor t;
      try {
        t = alloc_(job.dtype, job.shape);
      } catch (const std::exception& e) {
        MOETRON_FAIL(job.file << ": tensor '" << job.tensor << "': no staging memory for its "
                              << job.bytes() << " bytes: " << e.what());
      }
      MOETRON_ASSERT(t.nbytes() == job.bytes());
      read_job(job, t, scratch);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ready_bytes_ += t.nbytes();
        ready_.push_back(std::move(t));
      }
      cv_.notify_all();
    }
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

int SliceReader::fd_for(const std::string& file) {
  auto it = fds_.find(file);
  if (it != fds_.end()) return it->second;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  MOETRON_CHECK(fd >= 0, file << ": cannot open for reading: " << std::strerror(errno));
  // The reads within a file mostly run forward (a layer's tensors lie together).
  (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  fds_[file] = fd;
  return fd;
}

void SliceReader::pread_fully(int fd, const SliceJob& job, void* dst, uint64_t len, uint64_t offset) {
  auto* p = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd, p + done, static_cast<size_t>(std::min<uint64_t>(len - done, 1ull << 30)),
                              static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    MOETRON_CHECK(n >= 0, job.file << ": tensor '" << job.tensor << "': reading " << len << " bytes at offset "
                                   << offset << " failed: " << std::strerror(errno));
    if (n == 0) {
      struct stat st {};
      const long long size = fstat(fd, &st) == 0 ? static_cast<long long>(st.st_size) : -1;
      MOETRON_FAIL(job.file << ": tensor '" << job.tensor << "': the file ends at byte " << size
                            << " but the tensor's bytes run to " << offset + len
                            << " (truncated since it was opened?)");
    }
    done += static_cast<uint64_t>(n);
  }
}

void SliceReader::read_job(const SliceJob& job, Tensor& out, std::vector<char>& scratch) {
  if (job.bytes() == 0) return;
  const int fd = fd_for(job.file);
  auto* dst = static_cast<char*>(out.data);
  if (job.rows == 1 || job.stride == job.run_bytes) {  // one contiguous range
    pread_fully(fd, job, dst, job.bytes(), job.offset);
    return;
  }
  if (job.run_bytes >= kRunPreadBytes) {
    for (int64_t r = 0; r < job.rows; ++r)
      pread_fully(fd, job, dst + r * job.run_bytes, job.run_bytes, job.offset + r * job.stride);
    return;
  }
  const int64_t per_span = static_cast<int64_t>(std::max<uint64_t>(1, kSpanBytes / job.stride));
  for (int64_t r0 = 0; r0 < job.rows; r0 += per_span) {
    const int64_t n = std::min(per_span, job.rows - r0);
    const uint64_t span = (n - 1) * job.stride + job.run_bytes;
    scratch.resize(std::max<size_t>(scratch.size(), span));
    pread_fully(fd, job, scratch.data(), span, job.offset + r0 * job.stride);
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(dst + (r0 + r) * job.run_bytes, scratch.data() + r * job.stride, job.run_bytes);
  }
}

}  // namespace moetron
