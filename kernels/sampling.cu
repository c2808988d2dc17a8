// Sampling, one block per row of logits, entirely on the device.
// - Greedy: the argmax. Decode has few rows, so each block must stream its row fast on its own:
//   1024 threads, 16-byte loads, several in flight per thread.
// - Temperature / top-k / top-p: radix::sample_row (moetron/sampling/radix_sampling.hpp, shared
//   with the CPU tests) over BlockRow below: a handful of strided passes over the row (it stays
//   in L2 between them), 256-bin shared-memory histograms, no sort and no host sync.
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
class BlockRow {
 public:
  __device__ BlockRow(const float* row, int64_t vocab, SampleShared& shared)
      : row_(row), vocab_(vocab), shared_(shared) {}

  __device__ int64_t vocab() const { return vocab_; }

  __device__ uint64_t max_key(const radix::Range& r) {
    unsigned long long best = 0;
    for (int64_t i = threadIdx.x; i < vocab_; i += kSampleThreads) {
      const uint64_t key = radix::key_of(row_[i], i);
      if (radix::in_range(key, r) && key > best) best = key;
    }
    return block_reduce(best, MaxOp{}, 0ull);
  }

  __device__ double mass(uint64_t lo, const radix::Weights& w) {
    double sum = 0.0;  // each thread adds its own tokens in order, then a fixed tree
    for (int64_t i = threadIdx.x; i < vocab_; i += kSampleThreads) {
      const float logit = row_[i];
      if (radix::key_of(logit, i) >= lo) sum += static_cast<double>(w(logit));
    }
    return block_reduce(sum, SumOp{}, 0.0);
  }

  __device__ const radix::Histogram& histogram(const radix::Range& r, const radix::Weights* w,
                                               double per_unit) {
    radix::Histogram& h = shared_.hist;
    __syncthreads();  // every thread is done reading the previous histogram
    for (int b = threadIdx.x; b < radix::kBins; b += kSampleThreads) {
      h.count[b] = 0;
      h.mass[b] = 0;
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < vocab_; i += kSampleThreads) {
      const float logit = row_[i];
      const uint64_t key = radix::key_of(logit, i);
      if (!radix::in_range(key, r)) continue;
      const int d = radix::digit_of(key, r.level);
      atomicAdd(&h.count[d], 1u);
      if (w != nullptr) atomicAdd(&h.mass[d], radix::fixed_point((*w)(logit), per_unit));
    }
    __syncthreads();
    return h;
  }

 private:
  const float* row_;
  int64_t vocab_;
  SampleShared& shared_;
};

__global__ void __launch_bounds__(kSampleThreads)
    sample_rows_kernel(const float* __restrict__ logits, int64_t cols,
                       const radix::RowParams* __restrict__ params, int32_t* ids) {
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
  sample_rows_kernel<<<rows, kSampleThreads, 0, stream>>>(logits, cols, params, ids);
  CUDA_CHECK_LAUNCH();
}

void argmax_rows(const void* logits, bool logits_bf16, int64_t rows, int64_t cols, int32_t* ids,
                 cudaStream_t stream) {
  if (rows == 0) return;
  static_assert(kThreads == 32 * 32, "the final merge reads one partial per lane");
  if (logits_bf16)
    argmax_rows_kernel<bf16><<<rows, kThreads, 0, stream>>>(static_cast<const bf16*>(logits),
                                                            cols, ids);
  else
    argmax_rows_kernel<float><<<rows, kThreads, 0, stream>>>(static_cast<const float*>(logits),
                                                             cols, ids);
  CUDA_CHECK_LAUNCH();
}

}  // namespace kernels
}  // namespace moetron
