#include <algorithm>
#include <cstring>
#include <map>
#include <thread>

#include "moetron/core/error.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/model/safetensors.hpp"
#include "moetron/model/slice_reader.hpp"
#include "moetron/model/checkpoint_source.hpp"

namespace moetron {
namespace {

// The dtype most of a checkpoint's floating-point tensors have. A stray F32 or F16 tensor in a
// bf16 checkpoint (an exporter's choice for a router or a norm) is converted to it on load, as
// other loaders do, so every weight of a layer has one dtype.
DType prevailing_float_dtype(const Checkpoint& c) {
  std::map<DType, int64_t> count;
  for (const std::string& name : c.names()) {
    const DType t = c.get(name).dtype;
    if (is_float_dtype(t)) ++count[t];
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

class CheckpointSource : public WeightSource {
 public:
  explicit CheckpointSource(const std::string& dir)
      : ckpt_(Checkpoint::open(dir)), dtype_(prevailing_float_dtype(ckpt_)) {}

  Tensor read(const TensorSpec& spec, int64_t row_begin, int64_t row_count, int64_t col_begin,
              int64_t col_count) override {
    const TensorView view = get_checked(ckpt_, spec);
    const SliceJob job = slice_job(view, spec, row_begin, row_count, col_begin, col_count);
    Tensor out;
    if (reader_) {
      const SliceRead& want = expected_.at(expected_.size() - reader_->remaining());
      MOETRON_CHECK(want.spec.name == spec.name && want.row_begin == row_begin && want.row_count == row_count &&
                        want.col_begin == col_begin && want.col_count == col_count,
                    ckpt_.dir() << ": reading tensor '" << spec.name << "' " << where(row_begin, col_begin)
                                << " breaks the announced order (expected '" << want.spec.name << "' "
                                << where(want.row_begin, want.col_begin) << " next)");
      out = reader_->next();
      if (reader_->remaining() == 0) expect({}, {});
    } else {
      out = host_tensor(job.dtype, job.shape);
      for (int64_t r = 0; r < row_count; ++r)
        std::memcpy(static_cast<char*>(out.data) + r * job.run_bytes,
                    static_cast<const char*>(view.data) + (job.offset - view.file_offset) + r * job.stride,
                    job.run_bytes);
    }
    // NaN or infinite weights would only show as all-zero tokens much later: name the tensor.
    const size_t n = static_cast<size_t>(out.numel());
    const size_t bad = first_non_finite(out.data, out.dtype, n);
    MOETRON_CHECK(bad == n, view.file << ": tensor '" << spec.name << "' holds a non-finite value ("
                                      << load_as_float(out.data, out.dtype, bad) << ") in the slice read "
                                      << where(row_begin, col_begin) << ": damaged checkpoint");
    if (out.dtype == dtype_ || !is_float_dtype(out.dtype)) return out;
    Tensor converted = host_tensor(dtype_, out.shape);
    for (size_t i = 0; i < n; ++i) store_float(load_as_float(out.data, out.dtype, i), dtype_, converted.data, i);
    return converted;
  }

  void expect(std::vector<SliceRead> reads, StagingAlloc staging) override {
    reader_.reset();
    expected_.clear();
    if (reads.empty()) return;
    std::vector<SliceJob> jobs;
    for (SliceRead& r : reads) {
      const TensorView view = get_checked(ckpt_, r.spec);
      jobs.push_back(slice_job(view, r.spec, r.row_begin, r.row_count, r.col_begin, r.col_count));
    }
    expected_ = std::move(reads);
    reader_ = std::make_unique<SliceReader>(std::move(jobs), std::move(staging));
  }

 private:
  static std::string where(int64_t row_begin, int64_t col_begin) {
    return "(rows from " + std::to_string(row_begin) + ", columns from " + std::to_string(col_begin) + ")";
  }
  // Where a slice lies in its file: rows of col_count elements, a tensor row apart. Resolves
  // -1 counts in place (slice_shape).
  static SliceJob slice_job(const TensorView& view, const TensorSpec& spec, int64_t& row_begin, int64_t& row_count,
                            int64_t& col_begin, int64_t& col_count) {
    SliceJob job;
    job.shape = slice_shape(spec.shape, row_begin, row_count, col_begin, col_count);
    const int64_t ncols = as_matrix(spec.shape).cols;
    const uint64_t elem = dtype_size(view.dtype);
    job.file = view.file;
    job.tensor = spec.name;
    job.offset = view.file_offset + static_cast<uint64_t>(row_begin * ncols + col_begin) * elem;
    job.stride = static_cast<uint64_t>(ncols) * elem;
    job.run_bytes = static_cast<uint64_t>(col_count) * elem;
    job.rows = row_count;
    job.dtype = view.dtype;
    return job;
  }

  Checkpoint ckpt_;
  DType dtype_;  // every floating-point weight is returned in this dtype
  std::vector<SliceRead> expected_;      // announced by expect(), resolved
  std::unique_ptr<SliceReader> reader_;  // reads them ahead; null when none are announced
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
    fill_random_rows(random_fill_for(spec, seed_), dtype_, row_begin * ncols + col_begin, ncols, row_count, col_count,
                     out.data);
    return out;
  }

  std::optional<Generated> generated(const TensorSpec& spec) const override {
    return Generated{random_fill_for(spec, seed_), dtype_};
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
