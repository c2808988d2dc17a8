#include <algorithm>
#include <cstring>
#include <map>
#include <thread>

#include "moetron/core/error.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/model/safetensors.hpp"
#include "moetron/model/weight_source.hpp"

namespace moetron {
namespace {

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// The dtype most of a checkpoint's floating-point tensors have. A stray F32 or F16 tensor in a
// bf16 checkpoint (an exporter's choice for a router or a norm) is converted to it on load, as
// other loaders do, so every weight of a layer has one dtype.
DType prevailing_float_dtype(const Checkpoint& c) {
  std::map<DType, int64_t> count;
  for (const std::string& name : c.names()) {
    const DType t = c.get(name).dtype;
    if (is_float(t)) ++count[t];
  }
  DType best = DType::BF16;
  for (const auto& [t, n] : count)
    if (n > count[best]) best = t;
  return best;
}

void store_float(float v, DType t, void* data, size_t i) {
  switch (t) {
    case DType::F32: static_cast<float*>(data)[i] = v; break;
    case DType::BF16: static_cast<uint16_t*>(data)[i] = float_to_bf16(v); break;
    case DType::F16: static_cast<uint16_t*>(data)[i] = float_to_f16(v); break;
    default: MOETRON_ASSERT(false);
  }
}

// Index of the first NaN or infinity among n elements (all exponent bits set), or n.
size_t first_non_finite(const void* data, DType t, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    switch (t) {
      case DType::F32: {
        uint32_t bits;
        std::memcpy(&bits, static_cast<const char*>(data) + 4 * i, 4);
        if ((bits & 0x7f800000u) == 0x7f800000u) return i;
        break;
      }
      case DType::BF16:
        if ((static_cast<const uint16_t*>(data)[i] & 0x7f80u) == 0x7f80u) return i;
        break;
      case DType::F16:
        if ((static_cast<const uint16_t*>(data)[i] & 0x7c00u) == 0x7c00u) return i;
        break;
      default: return n;
    }
  }
  return n;
}

// Runs fn(first_row, end_row, thread_index) over [0, rows) split between the cores, one
// range each, when the slice is large enough to pay for the threads (64 Ki elements a thread);
// else on the calling thread alone (index 0).
template <typename Fn>
void for_row_ranges(int64_t rows, int64_t cols, Fn fn) {
  if (rows <= 0) return;
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t threads = std::clamp<int64_t>(rows * cols / (1 << 16), 1, std::min(rows, cores));
  if (threads == 1) return fn(0, rows, 0);
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] { fn(rows * t / threads, rows * (t + 1) / threads, static_cast<int>(t)); });
  for (std::thread& th : pool) th.join();
}

// How far past a slice the file is requested from the disk: the tensors that follow it in the
// file are usually the loader's next reads (a layer's experts are stored together).
constexpr size_t kReadAhead = 64u << 20;

class CheckpointSource : public WeightSource {
 public:
  explicit CheckpointSource(const std::string& dir)
      : ckpt_(Checkpoint::open(dir)), dtype_(prevailing_float_dtype(ckpt_)) {}

  Tensor read(const TensorSpec& spec, int64_t row_begin, int64_t row_count, int64_t col_begin,
              int64_t col_count) override {
    const TensorView view = get_checked(ckpt_, spec);
    const int64_t ncols = as_matrix(spec.shape).cols;
    Tensor out = host_tensor(view.dtype, slice_shape(spec.shape, row_begin, row_count, col_begin, col_count));
    const size_t elem = dtype_size(view.dtype);
    const auto* src = static_cast<const char*>(view.data);
    auto* dst = static_cast<char*>(out.data);
    const size_t n = static_cast<size_t>(out.numel());
    // A cold checkpoint is read from disk here. One thread faulting pages in one by one keeps a
    // single small read in flight (about half the disk's sequential rate, perf/RESULTS.md), so
    // the slice's pages and the file's next kReadAhead bytes are requested at once, and the
    // copy and the finiteness check (CPU work the next read would otherwise wait for) are
    // spread over the cores.
    if (n > 0) {
      const char* span_begin = src + static_cast<size_t>(row_begin * ncols + col_begin) * elem;
      const char* span_end = src + static_cast<size_t>((row_begin + row_count - 1) * ncols + col_begin + col_count) * elem;
      view.owner->advise_will_need(span_begin, static_cast<size_t>(span_end - span_begin) + kReadAhead);
    }
    std::vector<size_t> first_bad(std::max(1u, std::thread::hardware_concurrency()), n);
    for_row_ranges(row_count, col_count, [&](int64_t first, int64_t end, int thread) {
      for (int64_t r = first; r < end; ++r) {
        std::memcpy(dst + static_cast<size_t>(r * col_count) * elem,
                    src + static_cast<size_t>((row_begin + r) * ncols + col_begin) * elem,
                    static_cast<size_t>(col_count) * elem);
      }
      const size_t offset = static_cast<size_t>(first * col_count);
      const size_t count = static_cast<size_t>((end - first) * col_count);
      const size_t bad = first_non_finite(dst + offset * elem, out.dtype, count);
      if (bad < count) first_bad[static_cast<size_t>(thread)] = offset + bad;
    });
    // NaN or infinite weights would only show as all-zero tokens much later: name the tensor.
    const size_t bad = *std::min_element(first_bad.begin(), first_bad.end());
    MOETRON_CHECK(bad == n, view.file << ": tensor '" << spec.name << "' holds a non-finite value ("
                                      << load_as_float(out.data, out.dtype, bad) << ") in the slice read "
                                      << "(rows from " << row_begin << ", columns from " << col_begin
                                      << "): damaged checkpoint");
    if (out.dtype == dtype_ || !is_float(out.dtype)) return out;
    Tensor converted = host_tensor(dtype_, out.shape);
    for (size_t i = 0; i < n; ++i) store_float(load_as_float(out.data, out.dtype, i), dtype_, converted.data, i);
    return converted;
  }

 private:
  Checkpoint ckpt_;
  DType dtype_;  // every floating-point weight is returned in this dtype
};

// Random weights, generated slice by slice (each element depends only on seed, name, index).
class RandomSource : public WeightSource {
 public:
  RandomSource(uint64_t seed, DType dtype) : seed_(seed), dtype_(dtype) {}

  Tensor read(const TensorSpec& spec, int64_t row_begin, int64_t row_count, int64_t col_begin,
              int64_t col_count) override {
    const int64_t ncols = as_matrix(spec.shape).cols;
    Tensor out = host_tensor(dtype_, slice_shape(spec.shape, row_begin, row_count, col_begin, col_count));
    if (out.numel() == 0) return out;  // e.g. a tp rank's LM head that holds padding only
    const RandomFill fill = random_fill_for(spec, seed_);
    const size_t row_bytes = static_cast<size_t>(col_count) * dtype_size(dtype_);
    // Real shapes hold billions of values: generate rows on every core.
    for_row_ranges(row_count, col_count, [&](int64_t first, int64_t end, int) {
      for (int64_t r = first; r < end; ++r)
        fill_random(fill, dtype_, (row_begin + r) * ncols + col_begin, col_count,
                    static_cast<char*>(out.data) + static_cast<size_t>(r) * row_bytes);
    });
    return out;
  }

 private:
  uint64_t seed_;
  DType dtype_;
};

}  // namespace

std::unique_ptr<WeightSource> make_random_source(uint64_t seed, DType dtype) {
  return std::make_unique<RandomSource>(seed, dtype);
}

std::unique_ptr<WeightSource> open_checkpoint_source(const std::string& dir) {
  return std::make_unique<CheckpointSource>(dir);
}

}  // namespace moetron
