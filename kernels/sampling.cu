// Sampling, one block per row of logits, entirely on the device.
// - Greedy: the argmax. Decode has few rows, so each block must stream its row fast on its own:
//   1024 threads, 16-byte loads, several in flight per thread.
// - Temperature / top-k / top-p: radix::sample_row (moetron/sampling/radix_sampling.hpp, shared
//   with the CPU tests) over BlockRow below: a handful of strided passes over the row (it stays
//   in L2 between them), 256-bin shared-memory histograms, no sort and no host sync.
#include <type_traits>

#include "common.cuh"
#include "moetron/sampling/radix_sampling.hpp"

namespace moetron {
namespace kernels {
namespace {

constexpr int kThreads = 1024;
constexpr int kUnroll = 4;            // 16-byte loads in flight per thread
constexpr int kInvalid = 0x7fffffff;  // index of "nothing seen yet"

template <typename T>
struct Vec16 {
  static constexpr int kElems = 16 / sizeof(T);
  T v[kElems];
};

// NaN never wins (every comparison with it is false); a row holding a NaN or +Inf gives
// kNonFiniteToken instead of a token (one comparison per logit, one block-wide OR).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    argmax_rows_kernel(const T* __restrict__ logits, int64_t cols, int32_t* ids) {
  pdl_enter();  // first: see common.cuh
  constexpr int kVec = Vec16<T>::kElems;
  const T* row = logits + blockIdx.x * cols;
  float best = -INFINITY;
  int best_i = kInvalid;
  bool non_finite = false;
  auto take = [&](float logit, int i) {
    non_finite |= breaks_sampling(logit);
    argmax_merge(best, best_i, logit, i);
  };
  // Scalar head up to a 16-byte boundary, vector body, scalar tail.
  int64_t head = ((16 - (reinterpret_cast<uintptr_t>(row) & 15)) & 15) / sizeof(T);
  if (head > cols) head = cols;
  const int64_t body = (cols - head) / kVec;  // whole vectors
  for (int64_t c = threadIdx.x; c < head; c += kThreads)
    take(as_float(row[c]), static_cast<int>(c));
  const Vec16<T>* vec = reinterpret_cast<const Vec16<T>*>(row + head);
  for (int64_t v0 = threadIdx.x; v0 < body; v0 += static_cast<int64_t>(kThreads) * kUnroll) {
    Vec16<T> chunk[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + static_cast<int64_t>(u) * kThreads;
      if (v < body) chunk[u] = vec[v];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + static_cast<int64_t>(u) * kThreads;
      if (v >= body) break;
#pragma unroll
      for (int i = 0; i < kVec; ++i)
        take(as_float(chunk[u].v[i]), static_cast<int>(head + v * kVec + i));
    }
  }
  for (int64_t c = head + body * kVec + threadIdx.x; c < cols; c += kThreads)
    take(as_float(row[c]), static_cast<int>(c));

  warp_argmax(best, best_i);
  __shared__ float vals[32];
  __shared__ int idxs[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    vals[warp] = best;
    idxs[warp] = best_i;
  }
  const bool row_non_finite = __syncthreads_or(non_finite);  // also the barrier for vals/idxs
  if (warp == 0) {
    best = vals[lane];  // kThreads / 32 == 32 warps
    best_i = idxs[lane];
    warp_argmax(best, best_i);
    // A row of -inf only still names a valid token.
    if (lane == 0) ids[blockIdx.x] = row_non_finite ? kNonFiniteToken : best_i == kInvalid ? 0 : best_i;
  }
}

constexpr int kSampleThreads = 512;

struct SampleShared {
  radix::Histogram hist;
};

struct MaxOp {
  __device__ __forceinline__ unsigned long long operator()(unsigned long long a,
                                                           unsigned long long b) const {
    return a > b ? a : b;
  }
};

// radix::sample_row's view of one row, for the whole block. Every pass gives every thread the
// same answer: integer atomics and fixed-order reductions only, so a row samples the same token
// on every run.
//
// A row has one block (decode has few rows), so a pass is bound by how many loads each thread
// keeps in flight: 16-byte loads, kSampleUnroll of them at once (the row stays in L2 between
// passes).
class BlockRow {
 public:
  __device__ BlockRow(const float* row, int64_t vocab, SampleShared& shared)
      : row_(row), vocab_(vocab), shared_(shared),
        vectorized_((vocab & 3) == 0 && (reinterpret_cast<uintptr_t>(row) & 15) == 0) {}

  __device__ int64_t vocab() const { return vocab_; }

  __device__ uint64_t max_key(const radix::Range& r) {
    unsigned long long best = 0;
    for_each_logit([&](float logit, int64_t i, bool valid) {
      if (!valid) return;
      const uint64_t key = radix::key_of(logit, i);
      if (radix::in_range(key, r) && key > best) best = key;
    });
    return block_reduce(best, MaxOp{}, 0ull);
  }

  __device__ double mass(uint64_t lo, const radix::Weights& w) {
    double sum = 0.0;  // each thread adds its own tokens in a fixed order, then a fixed tree
    for_each_logit([&](float logit, int64_t i, bool valid) {
      if (valid && radix::key_of(logit, i) >= lo) sum += static_cast<double>(w(logit));
    });
    return block_reduce(sum, SumOp{}, 0.0);
  }

  // Keys of a level crowd into a few digits (logits share their sign and exponent), so one
  // shared atomic per key would queue whole warps on the same bin. A warp instead adds the keys
  // sharing the digit of its first key with one atomic (count and mass summed over the warp;
  // integer sums, so the result does not depend on the order), then likewise for the next
  // digit; keys of any further digits (a level that spreads them) add one by one.
  __device__ const radix::Histogram& histogram(const radix::Range& r, const radix::Weights* w,
                                               double per_unit) {
    radix::Histogram& h = shared_.hist;
    __syncthreads();  // every thread is done reading the previous histogram
    for (int b = threadIdx.x; b < radix::kBins; b += kSampleThreads) {
      h.count[b] = 0;
      h.mass[b] = 0;
    }
    __syncthreads();
    for_each_logit([&](float logit, int64_t i, bool valid) {
      int digit = 0;
      unsigned long long mass = 0;
      const uint64_t key = radix::key_of(logit, i);
      valid = valid && radix::in_range(key, r);
      if (valid) {
        digit = radix::digit_of(key, r.level);
        if (w != nullptr) mass = radix::fixed_point((*w)(logit), per_unit);
      }
      add_warp_keys(h, valid, digit, mass);
    });
    __syncthreads();
    return h;
  }

 private:
  static constexpr unsigned kWarp = 0xffffffffu;
  static constexpr int kSampleUnroll = 4;

  // f(logit, index, valid) for each logit this thread owns, each logit exactly once over the
  // block. The trip count is the same for all lanes of a warp (lanes past the end get
  // valid = false), so f may use warp shuffles.
  template <typename F>
  __device__ void for_each_logit(F&& f) const {
    if (vectorized_)
      visit<4>(f);
    else
      visit<1>(f);
  }

  template <int VEC, typename F>
  __device__ void visit(F& f) const {
    using Vec = typename std::conditional<VEC == 4, float4, float>::type;
    const Vec* vec = reinterpret_cast<const Vec*>(row_);
    const int64_t n = vocab_ / VEC;  // whole vectors (vectorized rows have no tail)
    const int lane = threadIdx.x & 31;
    constexpr int64_t kStride = kSampleThreads;
    for (int64_t warp_base = threadIdx.x - lane; warp_base < n;
         warp_base += kStride * kSampleUnroll) {
      Vec chunk[kSampleUnroll];
#pragma unroll
      for (int u = 0; u < kSampleUnroll; ++u) {
        const int64_t v = warp_base + lane + u * kStride;
        if (v < n) chunk[u] = vec[v];
      }
#pragma unroll
      for (int u = 0; u < kSampleUnroll; ++u) {
        const int64_t v = warp_base + lane + u * kStride;
        const bool valid = v < n;
        const float* values = reinterpret_cast<const float*>(&chunk[u]);
#pragma unroll
        for (int j = 0; j < VEC; ++j) f(valid ? values[j] : 0.0f, v * VEC + j, valid);
      }
    }
  }

  __device__ static void add_warp_keys(radix::Histogram& h, bool valid, int digit,
                                       unsigned long long mass) {
    const int lane = threadIdx.x & 31;
    unsigned todo = __ballot_sync(kWarp, valid);
    for (int round = 0; round < 2 && todo != 0; ++round) {
      const int leader = __ffs(todo) - 1;
      const int d = __shfl_sync(kWarp, digit, leader);
      const bool mine = ((todo >> lane) & 1u) && digit == d;
      const unsigned group = __ballot_sync(kWarp, mine);
      const unsigned long long group_mass = warp_reduce(mine ? mass : 0ull, SumOp{});
      if (lane == leader) {
        atomicAdd(&h.count[d], static_cast<unsigned>(__popc(group)));
        if (group_mass != 0) atomicAdd(&h.mass[d], group_mass);
      }
      todo &= ~group;
    }
    if ((todo >> lane) & 1u) {
      atomicAdd(&h.count[digit], 1u);
      if (mass != 0) atomicAdd(&h.mass[digit], mass);
    }
  }

  const float* row_;
  int64_t vocab_;
  SampleShared& shared_;
  bool vectorized_;
};

__global__ void __launch_bounds__(kSampleThreads)
    sample_rows_kernel(const float* __restrict__ logits, int64_t cols,
                       const radix::RowParams* __restrict__ params, int32_t* ids) {
  pdl_enter();  // first: see common.cuh
  __shared__ SampleShared shared;
  BlockRow row(logits + static_cast<int64_t>(blockIdx.x) * cols, cols, shared);
  const radix::RowParams p = params[blockIdx.x];
  const int32_t id = radix::sample_row(row, p);
  if (threadIdx.x == 0) ids[blockIdx.x] = id;
}

}  // namespace

void sample_rows(const float* logits, int64_t rows, int64_t cols,
                 const radix::RowParams* params, int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return;
  launch(sample_rows_kernel, rows, kSampleThreads, 0, stream, logits, cols, params, ids);
}

void argmax_rows(const void* logits, bool logits_bf16, int64_t rows, int64_t cols, int32_t* ids,
                 cudaStream_t stream) {
  if (rows == 0) return;
  static_assert(kThreads == 32 * 32, "the final merge reads one partial per lane");
  if (logits_bf16)
    launch(argmax_rows_kernel<bf16>, rows, kThreads, 0, stream, static_cast<const bf16*>(logits),
        cols, ids);
  else
    launch(argmax_rows_kernel<float>, rows, kThreads, 0, stream, static_cast<const float*>(logits),
        cols, ids);
}

}  // namespace kernels
}  // namespace moetron
