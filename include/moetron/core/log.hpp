// Logging: one line per event, printed by rank 0 only (other ranks print only errors, prefixed
// with their rank), with a level chosen by --log-level.
#pragma once
#include <sstream>
#include <string>

namespace moetron {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

LogLevel parse_log_level(const std::string& name);  // debug|info|warn|error|off, else Error
void set_log_level(LogLevel level);
LogLevel log_level();
void set_log_rank(int rank);  // rank 0 prints; others print warnings and errors only
int log_rank();
void log_line(LogLevel level, const std::string& line);
// A progress line that rewrites itself on a terminal and is a plain line otherwise.
void log_progress(const std::string& line);

}  // namespace moetron

#define MOETRON_LOG(level, msg)                                            \
  do {                                                                     \
    if (static_cast<int>(level) >= static_cast<int>(::moetron::log_level())) { \
      std::ostringstream moetron_log_os_;                                  \
      moetron_log_os_ << msg;                                              \
      ::moetron::log_line(level, moetron_log_os_.str());                   \
    }                                                                      \
  } while (0)
#define LOG_DEBUG(msg) MOETRON_LOG(::moetron::LogLevel::Debug, msg)
#define LOG_INFO(msg) MOETRON_LOG(::moetron::LogLevel::Info, msg)
#define LOG_WARN(msg) MOETRON_LOG(::moetron::LogLevel::Warn, msg)
#define LOG_ERROR(msg) MOETRON_LOG(::moetron::LogLevel::Error, msg)
