// Float32 building blocks of the CPU reference backend, on raw row-major arrays. The CpuOps
// methods check their tensors and call these; nothing here knows about Tensor.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace moetron {
namespace cpu {

// How many threads parallel_for may use, for the whole process (a process is one rank). Ranks
// sharing a node share its cores: each starting a thread a core would oversubscribe the node
// `ranks` times over, so the engine sets its share (threads_for_rank) before computing.
// The cores this process may run on (its affinity mask: taskset, srun, mpirun binding), in
// increasing order; empty when the system does not say.
std::vector<int> affinity_cores();
int usable_cores();  // how many: affinity_cores' count, else every core of the host
int node_cores();    // every core of the host
void set_threads(int threads);  // 0: back to every usable core
int threads();
// A rank's share: the node's cores over its ranks, never more than the rank may use, at least 1.
int threads_for_rank(int usable, int node, int ranks_on_node);

// Splits [0, n) into contiguous ranges run on a few std::threads when the job is big enough to
// pay for starting them (work_per_item: a rough cost of one item in multiply-adds); small jobs
// run inline on the caller's thread.
void parallel_for(int64_t n, int64_t work_per_item,
                  const std::function<void(int64_t begin, int64_t end)>& body);

// Sum of a[i] * b[i], accumulated in float over eight interleaved partial sums (which the
// compiler can vectorise and which round no worse than one running sum).
float dot(const float* a, const float* b, int64_t n);

// out[r, c] = sum_k x[r, k] * w[c, k] (+ bias[c]): x [rows, k], w [cols, k], out [rows, cols].
// Every output is one dot product over contiguous memory; bias may be null.
void matmul_nt(const float* x, int64_t rows, int64_t k, const float* w, int64_t cols,
               const float* bias, float* out);

// out [rows, h] = down(silu(gate x) * up x); gate_up [2 * inter, h] (gate rows, then up rows),
// down [h, inter].
void swiglu_mlp_rows(const float* x, int64_t rows, int64_t h, const float* gate_up,
                     const float* down, int64_t inter, float* out);

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace cpu
}  // namespace moetron
