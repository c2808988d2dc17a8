// Temporary files that SIGTERM or SIGINT must not leave behind. While a TempFileGuard lives,
// either signal first removes its file, then ends the process as the signal would have (exit
// status 128 + signal in a shell). SIGKILL cannot be caught: it can leave the file behind.
#pragma once
#include <string>

namespace moetron {

class TempFileGuard {
 public:
  explicit TempFileGuard(const std::string& path);  // throws Error when too many are alive
  ~TempFileGuard();
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

 private:
  int slot_;
};

}  // namespace moetron
