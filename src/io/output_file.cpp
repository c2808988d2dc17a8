#include "moetron/io/output_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "moetron/core/error.hpp"
#include "moetron/core/temp_files.hpp"

namespace moetron {
namespace {

std::string parent_directory(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string probe_name(const std::string& path) { return sibling_temp_name(path, "probe"); }

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

  std::string probe = probe_name(path);
  int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  MOETRON_CHECK(fd >= 0, path << ": cannot create files in directory " << dir << ": "
                              << std::strerror(errno));
  close(fd);
  MOETRON_CHECK(unlink(probe.c_str()) == 0,
                probe << ": cannot remove probe file: " << std::strerror(errno));
}

}  // namespace moetron
