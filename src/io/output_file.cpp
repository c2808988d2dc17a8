#include "moetron/io/output_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "moetron/core/error.hpp"
#include "moetron/io/temp_files.hpp"

namespace moetron {
namespace {

std::string parent_directory(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// "<path>.<kind>.<pid>", its last component cut to NAME_MAX bytes: a valid 254-byte output
// name must not fail for the suffix.
std::string temp_name(const std::string& path, const char* kind) {
  const std::string suffix = std::string(".") + kind + "." + std::to_string(getpid());
  const size_t slash = path.find_last_of('/');
  const size_t name_begin = slash == std::string::npos ? 0 : slash + 1;
  const size_t name_max = NAME_MAX - suffix.size();
  return path.substr(0, name_begin + std::min(path.size() - name_begin, name_max)) + suffix;
}

// Pushes a written file's data to the storage device, so the rename that follows never
// publishes a file whose contents a crash could still lose.
void sync_to_disk(const std::string& file) {
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  MOETRON_CHECK(fd >= 0, file << ": cannot reopen to sync: " << std::strerror(errno));
  int rc = fsync(fd);
  int fsync_errno = errno;
  close(fd);
  MOETRON_CHECK(rc == 0, file << ": cannot sync to disk: " << std::strerror(fsync_errno));
}

}  // namespace

void check_output_writable(const std::string& path) {
  MOETRON_CHECK(!path.empty(), "output path is empty");
  MOETRON_CHECK(path.back() != '/', path << ": output path names a directory, not a file");
  std::string dir = parent_directory(path);
  struct stat st {};
  MOETRON_CHECK(stat(dir.c_str(), &st) == 0,
                path << ": cannot write here: directory " << dir << ": " << std::strerror(errno));
  MOETRON_CHECK(S_ISDIR(st.st_mode), path << ": cannot write here: " << dir << " is not a directory");
  MOETRON_CHECK(!(stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)),
                path << ": output path is a directory, not a file");

  std::string probe = temp_name(path, "probe");
  int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  MOETRON_CHECK(fd >= 0, path << ": cannot create files in directory " << dir << ": "
                              << std::strerror(errno));
  close(fd);
  MOETRON_CHECK(unlink(probe.c_str()) == 0,
                probe << ": cannot remove probe file: " << std::strerror(errno));
}

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
  std::string tmp = temp_name(path, "tmp");
  TempFileGuard remove_on_signal(tmp);
  try {
    write(tmp);
    sync_to_disk(tmp);
    MOETRON_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0,
                  "cannot rename " << tmp << " to " << path << ": " << std::strerror(errno));
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());  // may not exist yet; nothing else to do if removal fails
    MOETRON_FAIL("cannot write " << path << ": " << e.what());
  }
}

}  // namespace moetron
