// SliceReader: reads a known list of tensor slices from files, in the list's order, on a thread
// of its own, a bounded distance ahead of the thread that consumes them.
//
// The loader knows every slice it will read before it reads the first (load_weights makes a dry
// pass), so the disk can be kept busy with exactly those bytes, in that order, while the loader
// checks, converts and uploads the slice before: large pread() calls into staging buffers that
// the caller's allocator supplies (page-locked on CUDA, see Ops::staging_tensor). Memory-mapped
// reads with madvise windows lost to this (perf/NOTES.md): the shards order tensors layers 0, 1,
// 10, 11, ..., the loader 0, 1, 2, ...
//
// An error on the reader thread (short read of a file truncated since it was opened, an I/O
// error, a failed allocation) is handed to the consumer by next(), naming the file and tensor;
// the slices read before it are delivered first.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "moetron/core/tensor.hpp"

namespace moetron {

// One slice: `rows` runs of `run_bytes` bytes, `stride` bytes apart in the file from `offset`,
// packed into a tensor of `dtype` and `shape` (rows * run_bytes bytes).
struct SliceJob {
  std::string file;    // path to pread from; named in messages
  std::string tensor;  // named in messages
  uint64_t offset = 0;
  uint64_t stride = 0;
  uint64_t run_bytes = 0;
  int64_t rows = 0;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;

  uint64_t bytes() const { return run_bytes * static_cast<uint64_t>(rows); }
};

class SliceReader {
 public:
  using Alloc = std::function<Tensor(DType, std::vector<int64_t>)>;
  // Reads ahead while fewer than two slices wait or the waiting ones hold under ahead_bytes.
  static constexpr uint64_t kDefaultAheadBytes = 256ull << 20;

  SliceReader(std::vector<SliceJob> jobs, Alloc alloc, uint64_t ahead_bytes = kDefaultAheadBytes);
  ~SliceReader();  // stops the thread (a pread under way finishes first)
  SliceReader(const SliceReader&) = delete;
  SliceReader& operator=(const SliceReader&) = delete;

  // The next job's bytes, packed; waits for them. Rethrows the reader thread's error.
  Tensor next();
  size_t remaining() const { return jobs_.size() - taken_; }

 private:
  void run();
  void read_job(const SliceJob& job, Tensor& out, std::vector<char>& scratch);
  int fd_for(const std::string& file);
  void pread_fully(int fd, const SliceJob& job, void* dst, uint64_t len, uint64_t offset);

  const std::vector<SliceJob> jobs_;
  const Alloc alloc_;
  const uint64_t ahead_bytes_;
  size_t taken_ = 0;  // consumer side only

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Tensor> ready_;
  uint64_t ready_bytes_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;

  std::map<std::string, int> fds_;  // reader thread only
  std::thread thread_;
};

}  // namespace moetron
