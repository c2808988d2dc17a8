#include "moetron/core/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <climits>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

#include "moetron/core/error.hpp"
#include "moetron/core/temp_files.hpp"

namespace moetron {
namespace {

std::string errno_text() { return std::strerror(errno); }


std::string parent_directory(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Renames the synced temp file over `path`; the rename is durable only once the directory
// entry is, so the directory is fsynced too.
void rename_durably(const std::string& tmp, const std::string& path) {
  MOETRON_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0,
                "cannot rename " << tmp << " to " << path << ": " << errno_text());
  const std::string dir = parent_directory(path);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  MOETRON_CHECK(dfd >= 0, dir << ": cannot open directory to fsync: " << errno_text());
  int rc = fsync(dfd);
  int fsync_errno = errno;
  close(dfd);
  MOETRON_CHECK(rc == 0, dir << ": fsync of directory failed: " << std::strerror(fsync_errno));
}

// Pushes a file written by someone else (by name) to the storage device.
void sync_file(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  MOETRON_CHECK(fd >= 0, file << ": cannot reopen to sync: " << errno_text());
  int rc = fsync(fd);
  int fsync_errno = errno;
  close(fd);
  MOETRON_CHECK(rc == 0, file << ": cannot sync to disk: " << std::strerror(fsync_errno));
}

}  // namespace

std::string sibling_temp_name(const std::string& path, const std::string& kind) {
  const std::string suffix = "." + kind + "." + std::to_string(getpid());
  const size_t slash = path.find_last_of('/');
  const size_t name_begin = slash == std::string::npos ? 0 : slash + 1;
  const size_t name_max = NAME_MAX - suffix.size();
  return path.substr(0, name_begin + std::min(path.size() - name_begin, name_max)) + suffix;
}

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)),
      tmp_(sibling_temp_name(path_, "tmp")),
      remove_on_signal_(std::make_unique<TempFileGuard>(tmp_)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MOETRON_CHECK(fd_ >= 0, tmp_ << ": cannot create: " << errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) close(fd_);
  if (!committed_) unlink(tmp_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t n) {
  MOETRON_CHECK(fd_ >= 0, tmp_ << ": write after commit");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    MOETRON_CHECK(w > 0, tmp_ << ": write failed: " << errno_text());
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFileWriter::commit() {
  MOETRON_CHECK(fd_ >= 0, tmp_ << ": committed twice");
  MOETRON_CHECK(fsync(fd_) == 0, tmp_ << ": fsync failed: " << errno_text());
  int rc = close(fd_);
  fd_ = -1;
  MOETRON_CHECK(rc == 0, tmp_ << ": close failed: " << errno_text());
  rename_durably(tmp_, path_);
  committed_ = true;
}

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
  const std::string tmp = sibling_temp_name(path, "tmp");
  TempFileGuard remove_on_signal(tmp);
  try {
    write(tmp);
    sync_file(tmp);
    rename_durably(tmp, path);
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());  // may not exist (or be renamed already); nothing else to do
    MOETRON_FAIL("cannot write " << path << ": " << e.what());
  }
}

}  // namespace moetron
