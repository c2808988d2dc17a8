// Writing a file so that readers see it whole or not at all, and a crash after the write
// returns cannot lose it: the data goes to "<path>.tmp.<pid>", which is fsynced, renamed over
// `path`, and then the directory entry is fsynced too. The one writer behind every output
// file: checkpoints and config.json (model/safetensors), results files (io/results).
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace moetron {

class TempFileGuard;

// "<path>.<kind>.<pid>", the last component cut so that the name stays within NAME_MAX: a valid
// 254-byte output name must not fail for the suffix.
std::string sibling_temp_name(const std::string& path, const std::string& kind);

// Streams bytes into the temp file; commit() publishes it as `path`. Destroyed without commit
// (an error on the way), it removes the temp file, so `path` is whole or untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);
  void commit();
  const std::string& temp_path() const { return tmp_; }

 private:
  std::string path_, tmp_;
  std::unique_ptr<TempFileGuard> remove_on_signal_;  // SIGTERM/SIGINT while writing remove tmp_
  int fd_ = -1;
  bool committed_ = false;
};

// For writers that open the file by name themselves (HDF5): calls write(tmp), then publishes
// tmp as `path` as above. On any failure tmp is removed and an Error names `path`.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

}  // namespace moetron
