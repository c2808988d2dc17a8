#include "cpu_math.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

namespace moetron {
namespace cpu {

namespace {
// Below this many multiply-adds per thread, starting a thread costs more than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 18;

// 0 until set_threads: then every usable core.
std::atomic<int64_t> thread_limit{0};

int64_t max_threads() {
  const int64_t set = thread_limit.load(std::memory_order_relaxed);
  if (set > 0) return set;
  static const int64_t usable = usable_cores();  // once: not a system call every op
  return usable;
}
}  // namespace

std::vector<int> affinity_cores() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  std::vector<int> cores;
  if (sched_getaffinity(0, sizeof mask, &mask) != 0) return cores;  // unknown
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &mask)) cores.push_back(c);
  return cores;
}

int usable_cores() {
  const size_t affinity = affinity_cores().size();
  if (affinity > 0) return static_cast<int>(affinity);
  return std::max(1u, std::thread::hardware_concurrency());
}

int node_cores() { return std::max(1u, std::thread::hardware_concurrency()); }

void set_threads(int threads) { thread_limit.store(std::max(0, threads), std::memory_order_relaxed); }

int threads() { return static_cast<int>(max_threads()); }

int threads_for_rank(int usable, int node, int ranks_on_node) {
  return std::max(1, std::min(usable, node / std::max(1, ranks_on_node)));
}

void parallel_for(int64_t n, int64_t work_per_item,
                  const std::function<void(int64_t begin, int64_t end)>& body) {
  if (n <= 0) return;
  int64_t total_work = n * std::max<int64_t>(1, work_per_item);
  int64_t threads = std::min({max_threads(), n, std::max<int64_t>(1, total_work / kMinWorkPerThread)});
  if (threads <= 1) {
    body(0, n);
    return;
  }
  int64_t chunk = (n + threads - 1) / threads;
  // An exception (an internal assert) in a worker is carried back and rethrown here, as if the
  // loop had run on the caller's thread.
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  auto run = [&](int64_t begin, size_t worker) {
    try {
      body(begin, std::min(n, begin + chunk));
    } catch (...) {
      errors[worker] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(threads - 1);
  for (int64_t begin = chunk, worker = 1; begin < n; begin += chunk, ++worker) {
    try {
      workers.emplace_back(run, begin, worker);
    } catch (const std::system_error&) {
      run(begin, worker);  // no thread to be had: do its share here
    }
  }
  run(0, 0);
  for (auto& w : workers) w.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

float dot(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 8;
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) partial[l] += a[i + l] * b[i + l];
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += partial[l];
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void matmul_nt(const float* x, int64_t rows, int64_t k, const float* w, int64_t cols,
               const float* bias, float* out) {
  // Blocks of output columns per thread; within a block, a weight row is read once for a tile
  // of input rows, so W streams through the cache once per tile rather than once per row.
  constexpr int64_t kRowTile = 8;
  parallel_for(cols, rows * k, [&](int64_t c0, int64_t c1) {
    for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
      int64_t r1 = std::min(rows, r0 + kRowTile);
      for (int64_t c = c0; c < c1; ++c) {
        const float* wc = w + c * k;
        float b = bias ? bias[c] : 0.0f;
        for (int64_t r = r0; r < r1; ++r) out[r * cols + c] = dot(x + r * k, wc, k) + b;
      }
    }
  });
}

void swiglu_mlp_rows(const float* x, int64_t rows, int64_t h, const float* gate_up,
                     const float* down, int64_t inter, float* out) {
  std::vector<float> gate_and_up(static_cast<size_t>(rows * 2 * inter));
  matmul_nt(x, rows, h, gate_up, 2 * inter, nullptr, gate_and_up.data());
  std::vector<float> act(static_cast<size_t>(rows * inter));
  for (int64_t r = 0; r < rows; ++r) {
    const float* gate = gate_and_up.data() + r * 2 * inter;
    const float* up = gate + inter;
    for (int64_t i = 0; i < inter; ++i) act[r * inter + i] = silu(gate[i]) * up[i];
  }
  matmul_nt(act.data(), rows, inter, down, h, nullptr, out);
}

}  // namespace cpu
}  // namespace moetron
