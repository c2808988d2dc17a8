#include "moetron/io/disk_space.hpp"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "moetron/core/error.hpp"

namespace moetron {

void check_free_space(const std::string& dir, uint64_t bytes, const std::string& what) {
  // The directory may not exist yet: measure the file system it will be created on.
  std::filesystem::path probe = std::filesystem::absolute(dir);
  std::error_code ec;
  while (!std::filesystem::exists(probe, ec) && probe.has_parent_path() && probe != probe.parent_path())
    probe = probe.parent_path();
  struct statvfs fs {};
  MOETRON_CHECK(statvfs(probe.c_str(), &fs) == 0,
                dir << ": cannot measure the free space of " << probe.string() << ": " << std::strerror(errno));
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  MOETRON_CHECK(bytes <= free_bytes, dir << ": " << what << " needs " << bytes << " bytes but its file system has "
                                         << free_bytes << " free; nothing was written");
}

}  // namespace moetron
