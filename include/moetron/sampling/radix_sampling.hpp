// The device sampler's algorithm (kernels/sampling.cu), written once for the host and the device
// so that the CPU tests can run the very code the kernel runs (tests/unit/test_sample_rows.cpp
// drives it with a sequential Row). It draws what sample_token (sampling.hpp) draws, without
// sorting the vocabulary:
//
// Each token is a 64-bit key = (order-preserving bits of its logit << 32) | (0xFFFFFFFF - id),
// so key descending is exactly the candidate order (logit descending, lower id first), and every
// key is unique. A set of candidates "keys >= lo" is then a prefix of that order, and both
// questions the sampler asks are answered by a radix descent over the key, 8 bits a level:
//   - top-k: which key is the k-th? (counts per digit);
//   - top-p and the draw: at which candidate does the cumulative weight reach a mass? (weights
//     per digit; the candidates before a bin are exactly those in the bins above it).
// A descent stops early once its bin holds one key (or, for top-k, only kept keys).
//
// Weights per digit are summed as fixed-point integers (2^62 units of an upper bound of the
// range's mass) so that device atomics give the same sums in any order, run after run. The
// first level's bound is the range's key count (no weight exceeds 1), so that level also gives
// the total weight W without a pass of its own; half a unit lost or gained per key moves a
// cumulative sum by < count^2 * 2^-63 (3e-10 for a 50k vocabulary, W >= 1): the draw can differ
// from the host's only where u * M lies that close to a boundary.
//
// Passes over the row are what the device pays for (each one a read of the row and, for a row
// split over blocks, an exchange between them), so the Row may answer a repeated question from
// what it kept (the draw asks the nucleus's first levels again) and, told that the descent has
// narrowed to a range of few keys (Row::narrow), gather those keys once and answer every later
// question inside that range from them. Neither changes an answer: only how many passes it takes.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "moetron/core/host_device.hpp"
#include "moetron/sampling/non_finite_logits.hpp"
#include "moetron/sampling/philox.hpp"

namespace moetron {
namespace radix {

// One row's sampling settings as the device reads them (one packed array per call).
struct RowParams {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  uint32_t unused = 0;
  uint64_t seed = 0;
  uint64_t step = 0;  // the Philox counter
};

constexpr int kDigitBits = 8, kBins = 1 << kDigitBits, kLevels = 64 / kDigitBits;

// ---- keys ---------------------------------------------------------------------------------------

// Order-preserving bits: NaN above everything (+inf included), so that the first pass over a
// row (max_key) finds any NaN or +Inf and the sampler gives kNonFiniteToken without another
// pass; -0 as +0 since the host's comparisons treat them as equal.
MOETRON_HOST_DEVICE inline uint32_t ordered_bits(float logit) {
  if (logit != logit) return 0xFFFFFFFFu;
  if (logit == 0.0f) return 0x80000000u;
  uint32_t bits;
  memcpy(&bits, &logit, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

MOETRON_HOST_DEVICE inline uint64_t key_of(float logit, int64_t token) {
  return (static_cast<uint64_t>(ordered_bits(logit)) << 32) |
         (0xFFFFFFFFu - static_cast<uint32_t>(token));
}

MOETRON_HOST_DEVICE inline int32_t token_of(uint64_t key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}

MOETRON_HOST_DEVICE inline float logit_of(uint64_t key) {
  const uint32_t o = static_cast<uint32_t>(key >> 32);
  const uint32_t bits = (o & 0x80000000u) ? (o & 0x7FFFFFFFu) : ~o;  // 0xFFFFFFFF (NaN) -> a NaN
  float logit;
  memcpy(&logit, &bits, sizeof logit);
  return logit;
}

// The softmax numerator of logit / temperature with the maximum subtracted, as sample_token
// computes it (float32 expf). NaN weighs nothing; a logit equal to the maximum weighs 1 also
// when the maximum is infinite, where the subtraction would give NaN.
struct Weights {
  float max_logit, temperature;
  MOETRON_HOST_DEVICE float operator()(float logit) const {
    if (logit != logit) return 0.0f;
    if (logit == max_logit) return 1.0f;
    return expf((logit - max_logit) / temperature);
  }
};

// The keys >= lo whose top `level` digits equal prefix.
struct Range {
  uint64_t lo = 0;
  int level = 0;
  uint64_t prefix = 0;
};

MOETRON_HOST_DEVICE inline bool in_range(uint64_t key, const Range& r) {
  return key >= r.lo && (r.level == 0 || (key >> (64 - kDigitBits * r.level)) == r.prefix);
}

MOETRON_HOST_DEVICE inline int digit_of(uint64_t key, int level) {
  return static_cast<int>((key >> (64 - kDigitBits * (level + 1))) & (kBins - 1));
}

MOETRON_HOST_DEVICE inline Range narrowed(Range r, int digit) {
  r.prefix = (r.prefix << kDigitBits) | static_cast<uint64_t>(digit);
  ++r.level;
  return r;
}

// Whether every key of `inner` lies in `outer` (ranges of one descent: inner narrowed from
// outer, or outer itself).
MOETRON_HOST_DEVICE inline bool inside(const Range& inner, const Range& outer) {
  if (inner.level < outer.level || inner.lo < outer.lo) return false;
  const int shift = kDigitBits * (inner.level - outer.level);
  return shift >= 64 ? outer.level == 0 : (inner.prefix >> shift) == outer.prefix;
}

// What a Row may keep between questions (see the header): the histograms of the first
// kKeptLevels levels, and up to kGatherKeys keys of a narrowed range.
constexpr int kKeptLevels = 2;
constexpr uint32_t kGatherKeys = 1024;

// A histogram's arguments, by which a Row recognizes a question it has answered.
struct Question {
  Range range;
  bool weighted = false;
  double per_unit = 0.0;
  bool valid = false;
  MOETRON_HOST_DEVICE bool answers(const Range& r, bool w, double unit) const {
    return valid && weighted == w && per_unit == unit && range.lo == r.lo &&
           range.level == r.level && range.prefix == r.prefix;
  }
};

// ---- histograms -----------------------------------------------------------------------------

// Per digit of one level: how many keys of the range, and their weights in fixed point; and per
// digit the same sums over the bins before it in candidate order (the higher digits), so that a
// pick is a binary search instead of a walk over 256 bins. The sums are integers, so the device
// (a parallel scan, kernels/sampling.cu) and the host (fill_sums_before) agree exactly.
struct Histogram {
  uint32_t count[kBins];
  unsigned long long mass[kBins];
  uint32_t count_before[kBins];            // keys in the bins of higher digits
  unsigned long long mass_before[kBins];   // their fixed-point weight
};

// count_before and mass_before from count and mass, in one sequential sweep (the reference the
// device's scan must match).
MOETRON_HOST_DEVICE inline void fill_sums_before(Histogram& h) {
  uint32_t c = 0;
  unsigned long long m = 0;
  for (int d = kBins - 1; d >= 0; --d) {
    h.count_before[d] = c;
    h.mass_before[d] = m;
    c += h.count[d];
    m += h.mass[d];
  }
}

// A weight in units of 1 / per_unit, rounded to nearest; per_unit = 2^62 / (a bound of the
// range's mass), so a range's sum stays below 2^62 plus half its key count.
constexpr double kUnitsPerBound = 0x1p62;
MOETRON_HOST_DEVICE inline unsigned long long fixed_point(float weight, double per_unit) {
  return static_cast<unsigned long long>(static_cast<double>(weight) * per_unit + 0.5);
}

struct Pick {
  int digit = -1;
  uint32_t count_before = 0;  // keys in the bins before it
  double mass_before = 0.0;   // cumulative weight before it (the descent's base included)
};

// The highest digit d in [0, hi] for which holds(d), where holds is true on [0, d*] and false
// above (monotone in candidate order); -1 when it holds nowhere in [0, hi].
template <class Holds>
MOETRON_HOST_DEVICE inline int last_holding(int hi, const Holds& holds) {
  int lo = -1;  // invariant: holds(lo) (or lo == -1), !holds(hi + 1)
  ++hi;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (holds(mid))
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

// last_holding as a functor: how the host's Row searches, and the picks' default. A Row may
// search otherwise (Row::search(): the device's block tests every digit at once), with the
// same answer for a monotone `holds`.
struct BinarySearch {
  template <class Holds>
  MOETRON_HOST_DEVICE int operator()(int hi, const Holds& holds) const { return last_holding(hi, holds); }
};

// Keys in the bins of digits >= d: grows as d falls.
MOETRON_HOST_DEVICE inline uint32_t count_through(const Histogram& h, int d) {
  return h.count_before[d] + h.count[d];
}

// The bin holding the k-th key (1-based) in candidate order; k <= the range's size.
template <class Search = BinarySearch>
MOETRON_HOST_DEVICE inline Pick pick_kth(const Histogram& h, uint32_t k, const Search& search = Search{}) {
  Pick p;
  p.digit = search(kBins - 1, [&](int d) { return count_through(h, d) >= k; });
  if (p.digit < 0) p.digit = 0;  // k beyond the range: not asked
  p.count_before = h.count_before[p.digit];
  return p;
}

// The first nonempty bin whose cumulative weight reaches target (> when strict, else >=),
// counting from base; the last nonempty bin when rounding leaves none (digit -1: empty range).
// The cumulative weight of a bin is base + (its integer sum through the bin) * unit.
template <class Search = BinarySearch>
MOETRON_HOST_DEVICE inline Pick pick_reaching(const Histogram& h, double unit, double base,
                                              double target, bool strict, const Search& search = Search{}) {
  const auto cumulative = [&](int d, bool through) {
    const unsigned long long m = h.mass_before[d] + (through ? h.mass[d] : 0ull);
    return base + static_cast<double>(m) * unit;
  };
  const uint32_t total = count_through(h, 0);
  Pick p;
  if (total == 0) return p;
  const int reached = search(kBins - 1, [&](int d) {
    const double next = cumulative(d, true);
    return strict ? next > target : next >= target;
  });
  // The highest nonempty bin at or below `reached` (the keys before it are those before the
  // bin): then every nonempty bin above it stays short of the target.
  int digit = -1;
  if (reached >= 0 && total > h.count_before[reached]) {
    const uint32_t before = h.count_before[reached];
    digit = search(reached, [&](int d) { return count_through(h, d) > before; });
  }
  if (digit < 0)  // not reached: the lowest nonempty bin
    digit = search(kBins - 1, [&](int d) { return count_through(h, d) == total; });
  p.digit = digit;
  p.count_before = h.count_before[digit];
  p.mass_before = cumulative(digit, false);
  return p;
}

// ---- blocks per row (the device sampler) ---------------------------------------------------

// How many blocks of the device sampler share one row: as many as keep the device's resident
// blocks busy (resident_blocks / rows), at most kMaxBlocksPerRow, and never a slice under
// kMinSlice logits (four a thread: below that a pass is its barrier and little else). The blocks
// of a row add into one sum per pass (kernels/sampling.cu), so a block's exchange costs the same
// however many share the row: a decode row of one request spreads over most of the GPU.
// 1: a block per row, nothing exchanged.
constexpr int64_t kMaxBlocksPerRow = 128, kMinSlice = 1024;
inline int blocks_per_row(int64_t rows, int64_t vocab, int64_t resident_blocks) {
  if (rows <= 0 || vocab <= 0) return 1;
  int64_t blocks = resident_blocks / rows;
  if (blocks > kMaxBlocksPerRow) blocks = kMaxBlocksPerRow;
  const int64_t by_slice = vocab / kMinSlice;
  if (blocks > by_slice) blocks = by_slice;
  return blocks < 1 ? 1 : static_cast<int>(blocks);
}

// ---- the descents -------------------------------------------------------------------------------
// Row is one row of logits seen by the whole block: every member is called by every thread
// with the same arguments and gives every thread the same answer.
//   int64_t vocab() const;
//   uint64_t max_key(const Range& r);                  // 0 when r is empty
//   const Histogram& histogram(const Range& r, const Weights* w, double per_unit);
//     (valid until the next call; w == nullptr: counts only)
//   void narrow(const Range& r, uint32_t keys);        // a hint: the next questions lie in r,
//                                                      // which holds `keys` keys
//   Search search() const;                             // how the picks find a bin
//                                                      // (BinarySearch, or as last_holding)

// The smallest lo such that exactly k keys are >= lo (1 <= k < vocab).
template <class Row>
MOETRON_HOST_DEVICE uint64_t kth_key_bound(Row& row, uint32_t k) {
  Range r;
  for (;;) {
    const Histogram& h = row.histogram(r, nullptr, 0.0);
    const Pick p = pick_kth(h, k, row.search());
    k -= p.count_before;
    const uint32_t in_bin = h.count[p.digit];
    const bool all_kept = in_bin == k;  // always so at the last level: keys are unique
    r = narrowed(r, p.digit);
    if (all_kept || r.level == kLevels) return r.prefix << (64 - kDigitBits * r.level);
    row.narrow(r, in_bin);
  }
}

// A candidate and its cumulative weight c_i.
struct Found {
  uint64_t key = 0;
  double cumulative = 0.0;
};

// The fixed-point unit of a descent level whose range weighs at most `bound`.
MOETRON_HOST_DEVICE inline double unit_of(double bound) { return bound / kUnitsPerBound; }

// The first candidate among the keys >= lo whose cumulative weight reaches target (> when
// strict), or the last of them when rounding leaves none. `bound` is at least their total weight
// (it scales the fixed-point bins) and > 0.
template <class Row>
MOETRON_HOST_DEVICE Found first_reaching(Row& row, const Weights& w, uint64_t lo, double bound,
                                         double target, bool strict) {
  Range r;
  r.lo = lo;
  double base = 0.0;
  for (;;) {
    const double unit = unit_of(bound);
    const Histogram& h = row.histogram(r, &w, 1.0 / unit);
    const Pick p = pick_reaching(h, unit, base, target, strict, row.search());
    if (p.digit < 0) return Found{lo, base};  // not reached: the range is never empty
    const uint32_t n = h.count[p.digit];
    // Each key lost at most half a unit, so this bounds the bin's weight from above.
    bound = static_cast<double>(h.mass[p.digit] + n) * unit;
    base = p.mass_before;
    r = narrowed(r, p.digit);
    if (r.level < kLevels) row.narrow(r, n);
    if (n == 1 || r.level == kLevels) {
      const uint64_t key = r.level == kLevels ? r.prefix : row.max_key(r);
      return Found{key, base + static_cast<double>(w(logit_of(key)))};
    }
  }
}

// The token sample_token(logits, vocab, p, p.step) picks (kNonFiniteToken for a row holding a
// NaN or +Inf: their keys are the largest); see sampling.hpp for the steps. Both descents (the
// nucleus's end, then the draw) run over the same range with the same first bound, so the
// draw's first levels are the nucleus's questions again.
template <class Row>
MOETRON_HOST_DEVICE int32_t sample_row(Row& row, const RowParams& p) {
  const uint64_t first = row.max_key(Range{});  // the first candidate: greedy's answer
  if (breaks_sampling(logit_of(first))) return kNonFiniteToken;
  if (p.temperature == 0.0f) return token_of(first);
  const Weights w{logit_of(first), p.temperature};
  const bool top_k = p.top_k > 0 && p.top_k < row.vocab();
  const uint64_t lo = top_k ? kth_key_bound(row, static_cast<uint32_t>(p.top_k)) : 0;
  // No weight exceeds 1 (the first candidate's), so the key count bounds the range's weight W.
  const double bound = static_cast<double>(top_k ? p.top_k : row.vocab());
  Range all;
  all.lo = lo;
  const Histogram& level0 = row.histogram(all, &w, 1.0 / unit_of(bound));
  const double total = static_cast<double>(level0.mass_before[0] + level0.mass[0]) * unit_of(bound);
  if (!(total > 0.0)) return token_of(first);  // not reached: the first candidate weighs 1
  Found nucleus{lo, total};                    // top_p == 1: all kept, M = W
  if (p.top_p < 1.0f)
    nucleus = first_reaching(row, w, lo, bound, static_cast<double>(p.top_p) * total, false);
  const double target =
      static_cast<double>(philox::uniform(p.seed, p.step)) * nucleus.cumulative;
  uint64_t key = first_reaching(row, w, lo, bound, target, true).key;
  if (key < nucleus.key) key = nucleus.key;  // rounding never takes the draw past the nucleus
  const int32_t token = token_of(key);
  return token >= 0 && token < row.vocab() ? token : token_of(first);  // never an invalid id
}

}  // namespace radix
}  // namespace moetron
