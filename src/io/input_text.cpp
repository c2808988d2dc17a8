#include "moetron/io/input_text.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include "moetron/core/error.hpp"

namespace moetron {
namespace {

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Closes the descriptor on every path.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

}  // namespace

std::string read_regular_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
  const std::string cannot = path + ": cannot read " + what + ": ";
  // O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  MOETRON_CHECK(fd >= 0 || errno != EISDIR, cannot << "it is a directory");
  MOETRON_CHECK(fd >= 0, cannot << std::strerror(errno));
  FdCloser closer{fd};
  struct stat st {};
  MOETRON_CHECK(fstat(fd, &st) == 0, cannot << std::strerror(errno));
  MOETRON_CHECK(S_ISREG(st.st_mode), cannot << "it is " << file_kind(st.st_mode)
                                          << (S_ISDIR(st.st_mode) ? "" : ", not a regular file"));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  MOETRON_CHECK(size <= max_bytes, cannot << "it is " << size << " bytes, more than the "
                                        << max_bytes << "-byte limit");
  std::string text(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, &text[done], text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    MOETRON_CHECK(n >= 0, cannot << std::strerror(errno));
    if (n == 0) break;  // shrank while we read: take what is there
    done += static_cast<size_t>(n);
  }
  text.resize(done);
  return text;
}

nlohmann::json parse_json_strict(const char* first, const char* last, const std::string& where) {
  using json = nlohmann::json;
  std::vector<std::set<std::string>> open_objects;
  std::string repeated;
  json::parser_callback_t note_keys = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == json::parse_event_t::key && !open_objects.empty() &&
        !open_objects.back().insert(parsed.get<std::string>()).second && repeated.empty())
      repeated = parsed.get<std::string>();
    return true;
  };
  json j;
  try {
    j = json::parse(first, last, note_keys);
  } catch (const json::exception& e) {
    MOETRON_FAIL(where << ": not valid JSON: " << e.what());
  }
  MOETRON_CHECK(repeated.empty(), where << ": key '" << repeated << "' appears twice in one object");
  return j;
}

}  // namespace moetron
