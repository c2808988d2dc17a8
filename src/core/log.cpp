#include "moetron/core/log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "moetron/core/error.hpp"

namespace moetron {
namespace {
LogLevel g_level = LogLevel::Info;
int g_rank = 0;
std::mutex g_mutex;
const char* level_tag(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
    default: return "";
  }
}
}  // namespace

LogLevel parse_log_level(const std::string& name) {
  if (name == "debug") return LogLevel::Debug;
  if (name == "info") return LogLevel::Info;
  if (name == "warn") return LogLevel::Warn;
  if (name == "error") return LogLevel::Error;
  if (name == "off") return LogLevel::Off;
  MOETRON_FAIL("--log-level: unknown level '" << name << "' (expected debug, info, warn, error or off)");
}
void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }
void set_log_rank(int rank) { g_rank = rank; }
int log_rank() { return g_rank; }

void log_line(LogLevel level, const std::string& line) {
  if (static_cast<int>(level) < static_cast<int>(g_level)) return;
  if (g_rank != 0 && level < LogLevel::Warn) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&t));
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "[moetron %s %s rank %d] %s\n", stamp, level_tag(level), g_rank, line.c_str());
  std::fflush(stderr);
}

void log_progress(const std::string& line) {
  if (g_rank != 0 || static_cast<int>(g_level) > static_cast<int>(LogLevel::Info)) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (isatty(STDERR_FILENO)) {
    std::fprintf(stderr, "\r[moetron progress] %s\033[K", line.c_str());
  } else {
    std::fprintf(stderr, "[moetron progress] %s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace moetron
