#include "moetron/core/temp_files.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "moetron/core/error.hpp"

namespace moetron {
namespace {

// Fixed slots, so the signal handler reads plain memory and calls only unlink (async-signal-safe).
constexpr int kSlots = 8;
constexpr size_t kPathBytes = 4096;
char g_paths[kSlots][kPathBytes];
std::atomic<bool> g_used[kSlots];

constexpr int kSignals[] = {SIGTERM, SIGINT};
struct sigaction g_previous[2];
int g_alive = 0;  // guards alive; handlers are installed while it is above 0
std::mutex g_mutex;

void remove_and_resignal(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (g_used[i].load()) unlink(g_paths[i]);
  // Restore what was there before and deliver the signal again: the default action ends the
  // process with the signal's status, as if we had never caught it.
  for (size_t i = 0; i < 2; ++i)
    if (kSignals[i] == sig) sigaction(sig, &g_previous[i], nullptr);
  raise(sig);
}

void install_handlers() {
  struct sigaction action {};
  action.sa_handler = remove_and_resignal;
  sigemptyset(&action.sa_mask);
  for (int sig : kSignals) sigaddset(&action.sa_mask, sig);  // one cleanup at a time
  for (size_t i = 0; i < 2; ++i) {
    sigaction(kSignals[i], nullptr, &g_previous[i]);
    if (g_previous[i].sa_handler != SIG_IGN) sigaction(kSignals[i], &action, nullptr);  // ignored stays ignored
  }
}

void restore_handlers() {
  for (size_t i = 0; i < 2; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
}

}  // namespace

TempFileGuard::TempFileGuard(const std::string& path) : slot_(-1) {
  MOETRON_CHECK(path.size() < kPathBytes, path << ": temporary file name too long to guard");
  std::lock_guard<std::mutex> lock(g_mutex);
  for (int i = 0; i < kSlots && slot_ < 0; ++i)
    if (!g_used[i].load()) slot_ = i;
  MOETRON_CHECK(slot_ >= 0, path << ": more than " << kSlots << " temporary files open at once");
  std::memcpy(g_paths[slot_], path.c_str(), path.size() + 1);
  g_used[slot_].store(true);
  if (g_alive++ == 0) install_handlers();
}

TempFileGuard::~TempFileGuard() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_used[slot_].store(false);
  if (--g_alive == 0) restore_handlers();
}

}  // namespace moetron
