// Sampling, one block per row of logits, entirely on the device.
// - Greedy: the argmax. Decode has few rows, so each block must stream its row fast on its own:
//   1024 threads, 16-byte loads, several in flight per thread.
// - Temperature / top-k / top-p: radix::sample_row (moetron/sampling/radix_sampling.hpp, shared
//   with the CPU tests) over BlockRow below: a handful of strided passes over the row (it stays
//   in L2 between them), 256-bin shared-memory histograms, no sort and no host sync; the first
//   levels' histograms are kept and a narrowed range's keys listed in shared memory, so that
//   questions asked again or inside that range cost no pass. Few rows (decode) split each row
//   over several blocks (radix::blocks_per_row), which add their partials into one sum per row
//   with integer atomics in global memory (and append their keys to one list per row) between
//   passes: what a block reads back is the same whatever the number of blocks, so one row may
//   spread over most of the GPU.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <type_traits>

#include "common.cuh"
#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
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

// 256 threads at most 80 registers each, so that three blocks fit an SM: the cooperative launch
// splits a row over as many blocks as are resident (one block an SM gave each batch-64 row two
// blocks and 305 us under ncu, H200, tenth session). What a launch costs is its passes over the
// row, each a read of the slice, per-token work and, for a split row, an exchange: thirteenth
// session, half the passes (radix_sampling.hpp: no mass pass, kept first levels, gathered narrow
// ranges) took the kernel from 381-398 to 170-190 us at batch 64 and from ~183 to ~117 us at
// batch 1 under ncu, same call (perf/NOTES.md). Fifteenth session: a batch-1 row on 12 blocks
// was latency-bound on 12 SMs (ncu: ~19k instructions a warp, one issued every 12 cycles); the
// sums added by atomics (PassSums) let it spread over 49 blocks (50k vocabulary): 120 -> 80 us.
constexpr int kSampleThreads = 256;
constexpr int kSampleMinBlocksPerSm = 3;

struct SampleShared {
  radix::Histogram kept[radix::kKeptLevels];  // the first levels' histograms (see BlockRow)
  radix::Histogram hist;                      // deeper levels'
  uint32_t warp_count[kSampleThreads / 32];   // the scan of fill_sums_before, a total a warp
  unsigned long long warp_mass[kSampleThreads / 32];
  uint64_t listed[radix::kGatherKeys];  // the keys of a narrowed range (BlockRow::narrow)
  uint32_t listed_count;
  uint32_t list_at;  // where this block's keys go in its row's list
};

struct MaxOp {
  __device__ __forceinline__ unsigned long long operator()(unsigned long long a,
                                                           unsigned long long b) const {
    return a > b ? a : b;
  }
};

// What the blocks of one row add up in one pass, in global memory: integer atomics (sums and a
// maximum), so the totals do not depend on the order in which the blocks arrive.
struct PassSums {
  unsigned long long mass[radix::kBins];
  uint32_t count[radix::kBins];
  unsigned long long max_key;
  uint32_t listed;  // keys appended to the row's list by a gather pass
};

// A row's pass sums rotate over three buffers: a block may add into pass p + 1's while a slower
// one of its row still reads pass p's, and pass p + 2's buffer (pass p - 1's) is cleared once
// every block has arrived at pass p (RowGroup::next_pass). Its gathered keys rotate over two
// lists (no block is two gathers ahead of another of its row).
constexpr int kPassBuffers = 3, kLists = 2;

// The workspace of a launch with `splits` > 1 blocks per row: each row's barrier counter, each
// row's pass sums, then each row's lists. The counters and sums are zeroed before each launch
// (zeroed_bytes: one memset).
constexpr size_t kCounterBytes = 256;  // per launch, rounded: keeps the sums aligned
size_t counters_bytes(int64_t rows) {
  return (static_cast<size_t>(rows) * sizeof(unsigned) + kCounterBytes - 1) / kCounterBytes *
         kCounterBytes;
}
size_t sums_bytes(int64_t rows) { return static_cast<size_t>(rows) * kPassBuffers * sizeof(PassSums); }
size_t zeroed_bytes(int64_t rows) { return counters_bytes(rows) + sums_bytes(rows); }
constexpr size_t kListWords = static_cast<size_t>(kLists) * radix::kGatherKeys;  // a row's
size_t workspace_bytes(int64_t rows, int splits) {
  if (splits <= 1) return 0;
  return zeroed_bytes(rows) + static_cast<size_t>(rows) * kListWords * sizeof(uint64_t);
}

// The blocks that share one row (splits == 1: a block has its row to itself, no exchange).
// Every block of a row makes the same calls in the same order (radix::sample_row gives all of
// them the same answers), so they meet at the same barriers.
class RowGroup {
 public:
  __device__ RowGroup(int splits, int split, unsigned* arrivals, PassSums* sums, uint64_t* lists)
      : splits_(splits), split_(split), arrivals_(arrivals), sums_(sums), lists_(lists) {}

  __device__ int splits() const { return splits_; }
  __device__ int split() const { return split_; }
  // This pass's sums: add into them before arrive_and_wait, read them (with __ldcg: past L1,
  // which may hold the buffer's content of three passes ago) after it.
  __device__ PassSums& sums() const { return sums_[passes_ % kPassBuffers]; }

  // Returns once every block of the row has added its part of this pass (its atomics, issued
  // before the call, are visible then: each block fences before it arrives).
  __device__ void arrive_and_wait() {
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence();
      atomicAdd(arrivals_, 1u);
      const unsigned everyone = static_cast<unsigned>((passes_ + 1) * splits_);
      while (*static_cast<volatile unsigned*>(arrivals_) < everyone) __nanosleep(64);
      __threadfence();
    }
    __syncthreads();
  }
  // After every thread has read this pass's sums. Every block has arrived at this pass, so none
  // still reads the previous pass's buffer: the row's first block clears it for pass + 2 (its
  // stores are visible before it arrives at the next pass, before which no block adds into it).
  __device__ void next_pass() {
    if (split_ == 0) {
      PassSums& old = sums_[(passes_ + 2) % kPassBuffers];
      for (int b = threadIdx.x; b < radix::kBins; b += blockDim.x) {
        old.count[b] = 0;
        old.mass[b] = 0;
      }
      if (threadIdx.x == 0) {
        old.max_key = 0;
        old.listed = 0;
      }
    }
    ++passes_;
  }

  // The row's list of gather g (kGatherKeys of room).
  __device__ uint64_t* list(int g) const { return lists_ + static_cast<size_t>(g % kLists) * radix::kGatherKeys; }

 private:
  int splits_, split_;
  unsigned* arrivals_;
  PassSums* sums_;
  uint64_t* lists_;
  int passes_ = 0;
};

// radix::last_holding for the whole block: every thread tests its own digit and the block
// counts those that hold (a monotone `holds` holds exactly on [0, d*]), one barrier instead of
// the eight dependent probes of a binary search that every thread ran alike (ncu, fifteenth
// session: the picks were ~30% of a batch-1 sampler's instructions and stall samples).
struct BlockSearch {
  template <class Holds>
  __host__ __device__ int operator()(int hi, const Holds& holds) const {
#ifdef __CUDA_ARCH__
    static_assert(kSampleThreads == radix::kBins, "one thread a digit");
    const int d = static_cast<int>(threadIdx.x);
    return __syncthreads_count(d <= hi && holds(d)) - 1;
#else
    return radix::last_holding(hi, holds);
#endif
  }
};

// radix::sample_row's view of one row, for the whole block (and, when the row is split, for
// every block of the row). Every pass gives every thread the same answer: integer atomics and
// fixed-order reductions only (the blocks of a split row add integers, in any order), so a row
// samples the same token on every run.
//
// Each block reads a slice of the row: the passes are bound by the per-token work (the key, an
// expf, a fixed-point weight, warp aggregation), so a row's time falls with the number of
// blocks that share it until the exchanges between passes dominate.
class BlockRow {
 public:
  __device__ BlockRow(const float* row, int64_t vocab, SampleShared& shared, RowGroup& group)
      : row_(row), vocab_(vocab), shared_(shared), group_(group),
        vectorized_((vocab & 3) == 0 && (reinterpret_cast<uintptr_t>(row) & 15) == 0) {}

  __device__ int64_t vocab() const { return vocab_; }
  __device__ BlockSearch search() const { return {}; }

  __device__ uint64_t max_key(const radix::Range& r) {
    unsigned long long best = 0;
    const bool listed = is_listed(r);
    for_each_candidate(listed, [&](float logit, int64_t i, bool valid) {
      if (!valid) return;
      const uint64_t key = radix::key_of(logit, i);
      if (radix::in_range(key, r) && key > best) best = key;
    });
    best = block_reduce(best, MaxOp{}, 0ull);
    if (group_.splits() == 1 || listed) return best;
    if (threadIdx.x == 0 && best != 0) atomicMax(&group_.sums().max_key, best);
    group_.arrive_and_wait();
    best = __ldcg(&group_.sums().max_key);
    group_.next_pass();
    return best;
  }

  // Gathers the keys of r (`keys` of them over the row) into shared memory, once, when they
  // fit: the questions that follow inside r then cost no pass over the row. Each block lists
  // its slice's keys (in any order: every answer from the list is an integer sum or a maximum,
  // the same in any order); a split row's blocks append theirs to the row's list (a place
  // taken by one atomic a block), then each copies the whole list.
  __device__ void narrow(const radix::Range& r, uint32_t keys) {
    if (keys > radix::kGatherKeys || is_listed(r)) return;
    __syncthreads();  // every thread is done with the previous list
    if (threadIdx.x == 0) shared_.listed_count = 0;
    __syncthreads();
    for_each_logit([&](float logit, int64_t i, bool valid) {
      const uint64_t key = radix::key_of(logit, i);
      if (!valid || !radix::in_range(key, r)) return;
      const uint32_t at = atomicAdd(&shared_.listed_count, 1u);
      if (at < radix::kGatherKeys) shared_.listed[at] = key;  // always: r holds `keys` keys
    });
    __syncthreads();
    if (group_.splits() > 1) {
      const uint32_t mine = shared_.listed_count;
      if (threadIdx.x == 0) shared_.list_at = mine == 0 ? 0 : atomicAdd(&group_.sums().listed, mine);
      __syncthreads();
      uint64_t* row_list = group_.list(gathers_);
      for (uint32_t j = threadIdx.x; j < mine; j += kSampleThreads) row_list[shared_.list_at + j] = shared_.listed[j];
      group_.arrive_and_wait();
      const uint32_t total = __ldcg(&group_.sums().listed);
      for (uint32_t j = threadIdx.x; j < total; j += kSampleThreads) shared_.listed[j] = __ldcg(row_list + j);
      group_.next_pass();
      __syncthreads();  // every thread has read listed_count before it is replaced
      if (threadIdx.x == 0) shared_.listed_count = total;
      __syncthreads();
    }
    ++gathers_;
    listed_ = r;
    has_list_ = true;
    list_size_ = shared_.listed_count;
  }

  // Keys of a level crowd into a few digits (logits share their sign and exponent), so one
  // shared atomic per key would queue whole warps on the same bin. A warp instead adds the keys
  // sharing the digit of its first key with one atomic (count and mass summed over the warp;
  // integer sums, so the result does not depend on the order), then likewise for the next
  // digit; keys of any further digits (a level that spreads them) add one by one. A split row's
  // blocks then add their nonempty bins into the row's sums and read the totals back.
  // A histogram of the first kKeptLevels levels is kept and answers the same question again
  // (the draw repeats the nucleus's first levels).
  __device__ const radix::Histogram& histogram(const radix::Range& r, const radix::Weights* w,
                                               double per_unit) {
    const bool kept = r.level < radix::kKeptLevels;
    if (kept && kept_[r.level].answers(r, w != nullptr, per_unit)) return shared_.kept[r.level];
    radix::Histogram& h = kept ? shared_.kept[r.level] : shared_.hist;
    if (kept) kept_[r.level] = radix::Question{r, w != nullptr, per_unit, true};
    const bool listed = is_listed(r);
    __syncthreads();  // every thread is done reading the previous histogram
    for (int b = threadIdx.x; b < radix::kBins; b += kSampleThreads) {
      h.count[b] = 0;
      h.mass[b] = 0;
    }
    __syncthreads();
    for_each_candidate(listed, [&](float logit, int64_t i, bool valid) {
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
    if (group_.splits() > 1 && !listed) {
      PassSums& sums = group_.sums();
      for (int b = threadIdx.x; b < radix::kBins; b += kSampleThreads) {
        if (h.count[b] != 0) atomicAdd(&sums.count[b], h.count[b]);
        if (h.mass[b] != 0) atomicAdd(&sums.mass[b], h.mass[b]);
      }
      group_.arrive_and_wait();
      for (int b = threadIdx.x; b < radix::kBins; b += kSampleThreads) {
        h.count[b] = __ldcg(&sums.count[b]);
        h.mass[b] = __ldcg(&sums.mass[b]);
      }
      group_.next_pass();
      __syncthreads();
    }
    fill_sums_before(h);
    return h;
  }

 private:

  __device__ bool is_listed(const radix::Range& r) const { return has_list_ && radix::inside(r, listed_); }

  // f(logit, index, valid) over the listed keys (listed) or this block's slice of the row.
  // Either way the trip count is the same for all lanes of a warp.
  template <typename F>
  __device__ void for_each_candidate(bool listed, F&& f) const {
    if (!listed) {
      for_each_logit(f);
      return;
    }
    const int lane = threadIdx.x & 31;
    for (uint32_t base = threadIdx.x - lane; base < list_size_; base += kSampleThreads) {
      const uint32_t j = base + lane;
      const bool valid = j < list_size_;
      const uint64_t key = valid ? shared_.listed[j] : 0;
      f(valid ? radix::logit_of(key) : 0.0f, valid ? radix::token_of(key) : 0, valid);
    }
  }

  static constexpr unsigned kWarp = 0xffffffffu;
  static constexpr int kSampleUnroll = 2;

  // radix::fill_sums_before as an exclusive block scan in candidate order: thread t owns digit
  // kBins - 1 - t. Integer sums, so the same values as the host's sequential sweep. Ends with a
  // barrier: every thread may pick from the sums on return.
  __device__ void fill_sums_before(radix::Histogram& h) {
    static_assert(kSampleThreads == radix::kBins, "one thread a bin");
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int d = radix::kBins - 1 - static_cast<int>(threadIdx.x);
    const uint32_t own_count = h.count[d];
    const unsigned long long own_mass = h.mass[d];
    uint32_t count = own_count;  // inclusive within the warp
    unsigned long long mass = own_mass;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
      const uint32_t c = __shfl_up_sync(kWarp, count, offset);
      const unsigned long long m = __shfl_up_sync(kWarp, mass, offset);
      if (lane >= offset) {
        count += c;
        mass += m;
      }
    }
    if (lane == 31) {
      shared_.warp_count[warp] = count;
      shared_.warp_mass[warp] = mass;
    }
    __syncthreads();
    for (int w = 0; w < warp; ++w) {
      count += shared_.warp_count[w];
      mass += shared_.warp_mass[w];
    }
    h.count_before[d] = count - own_count;
    h.mass_before[d] = mass - own_mass;
    __syncthreads();
  }  // 16-byte loads in flight per thread (registers: see kSampleThreads)

  // f(logit, index, valid) for each logit of this block's slice that this thread owns, each
  // logit exactly once over the row's blocks. The trip count is the same for all lanes of a
  // warp (lanes past the end get valid = false), so f may use warp shuffles.
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
    const int64_t per_block = (n + group_.splits() - 1) / group_.splits();
    const int64_t begin = per_block * group_.split();
    const int64_t end = n < begin + per_block ? n : begin + per_block;
    const int lane = threadIdx.x & 31;
    constexpr int64_t kStride = kSampleThreads;
    for (int64_t warp_base = begin + threadIdx.x - lane; warp_base < end;
         warp_base += kStride * kSampleUnroll) {
      Vec chunk[kSampleUnroll];
#pragma unroll
      for (int u = 0; u < kSampleUnroll; ++u) {
        const int64_t v = warp_base + lane + u * kStride;
        if (v < end) chunk[u] = vec[v];
      }
#pragma unroll
      for (int u = 0; u < kSampleUnroll; ++u) {
        const int64_t v = warp_base + lane + u * kStride;
        const bool valid = v < end;
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
  RowGroup& group_;
  bool vectorized_;
  radix::Question kept_[radix::kKeptLevels];
  radix::Range listed_;  // the range whose keys shared_.listed holds, when has_list_
  bool has_list_ = false;
  uint32_t list_size_ = 0;
  int gathers_ = 0;
};

// Block b samples row b / splits with the row's other blocks (workspace: see workspace_bytes).
__global__ void __launch_bounds__(kSampleThreads, kSampleMinBlocksPerSm)
    sample_rows_kernel(const float* __restrict__ logits, int64_t cols,
                       const radix::RowParams* __restrict__ params, int32_t* ids, int splits,
                       unsigned* arrivals, PassSums* sums, uint64_t* lists) {
  pdl_enter();  // first: see common.cuh
  __shared__ SampleShared shared;
  const int64_t r = blockIdx.x / splits;
  const int split = static_cast<int>(blockIdx.x % splits);
  RowGroup group(splits, split, arrivals == nullptr ? nullptr : arrivals + r,
                 sums == nullptr ? nullptr : sums + r * kPassBuffers,
                 lists == nullptr ? nullptr : lists + r * kListWords);
  BlockRow row(logits + r * cols, cols, shared, group);
  const radix::RowParams p = params[r];
  const int32_t id = radix::sample_row(row, p);
  if (threadIdx.x == 0 && split == 0) ids[r] = id;
}

// Blocks of sample_rows_kernel the current device holds at once (its split rows' blocks must
// all be resident to meet at their barriers: the launch is cooperative).
int64_t resident_sample_blocks() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int64_t> cached[kMaxDevices] = {};
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (device < kMaxDevices && cached[device] > 0) return cached[device];
  int per_sm = 0, sms = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, sample_rows_kernel,
                                                           kSampleThreads, 0));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t resident = static_cast<int64_t>(per_sm) * sms;
  if (device < kMaxDevices) cached[device] = resident;
  return resident;
}

// Blocks a row forced by MOETRON_SAMPLER_BLOCKS_PER_ROW (1 ... kMaxBlocksPerRow), to measure
// other splits without a rebuild; 0 when unset.
int forced_blocks_per_row() {
  static const int blocks = [] {
    const char* env = std::getenv("MOETRON_SAMPLER_BLOCKS_PER_ROW");
    if (env == nullptr) return 0;
    const std::optional<uint64_t> v = parse_decimal(env);
    MOETRON_CHECK(v && *v >= 1 && *v <= static_cast<uint64_t>(radix::kMaxBlocksPerRow),
                  "MOETRON_SAMPLER_BLOCKS_PER_ROW='" << env << "': expected 1 to "
                                                    << radix::kMaxBlocksPerRow);
    return static_cast<int>(*v);
  }();
  return blocks;
}

int splits_for(int64_t rows, int64_t cols) {
  const int64_t resident = resident_sample_blocks();
  const int forced = forced_blocks_per_row();
  if (forced == 0) return radix::blocks_per_row(rows, cols, resident);
  // Still every block resident (the launch is cooperative) and a key a thread at least.
  const int64_t cap = std::min(resident / std::max<int64_t>(rows, 1), cols / kSampleThreads);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(forced, cap)));
}

}  // namespace

size_t sample_rows_workspace_bytes(int64_t rows, int64_t cols) {
  return rows <= 0 ? 0 : workspace_bytes(rows, splits_for(rows, cols));
}

void sample_rows(const float* logits, int64_t rows, int64_t cols,
                 const radix::RowParams* params, int32_t* ids, void* workspace,
                 size_t workspace_size, cudaStream_t stream) {
  if (rows == 0) return;
  const int splits = splits_for(rows, cols);
  if (splits == 1) {
    launch(sample_rows_kernel, rows, kSampleThreads, 0, stream, logits, cols, params, ids, 1,
           static_cast<unsigned*>(nullptr), static_cast<PassSums*>(nullptr),
           static_cast<uint64_t*>(nullptr));
    return;
  }
  MOETRON_CHECK(workspace != nullptr && workspace_size >= workspace_bytes(rows, splits),
                "sample_rows: a workspace of " << workspace_size << " bytes for " << rows
                    << " rows split " << splits << " ways, which need "
                    << workspace_bytes(rows, splits));
  char* base = static_cast<char*>(workspace);
  unsigned* arrivals = reinterpret_cast<unsigned*>(base);
  PassSums* sums = reinterpret_cast<PassSums*>(base + counters_bytes(rows));
  uint64_t* lists = reinterpret_cast<uint64_t*>(base + zeroed_bytes(rows));
  CUDA_CHECK(cudaMemsetAsync(base, 0, zeroed_bytes(rows), stream));
  // Cooperative: every block resident at once, or the launch fails (never a barrier that waits
  // for a block that cannot start). splits_for keeps rows * splits within the resident blocks.
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeCooperative;
  attribute[0].val.cooperative = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(rows * splits));
  config.blockDim = dim3(kSampleThreads);
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = 1;
  CUDA_CHECK(cudaLaunchKernelEx(&config, sample_rows_kernel, logits, cols, params, ids, splits,
                                arrivals, sums, lists));
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

int sampler_forced_blocks_per_row() { return forced_blocks_per_row(); }

}  // namespace kernels
}  // namespace moetron
