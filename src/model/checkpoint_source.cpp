#include <algorithm>
#include <cstring>
#include <thread>

#include "moetron/core/error.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/model/safetensors.hpp"
#include "moetron/model/weight_source.hpp"

namespace moetron {
namespace {

class CheckpointSource : public WeightSource {
 public:
  explicit CheckpointSource(const std::string& dir) : ckpt_(Checkpoint::open(dir)) {}

  Tensor read(const TensorSpec& spec, int64_t row_begin, int64_t row_count, int64_t col_begin,
              int64_t col_count) override {
    const TensorView view = get_checked(ckpt_, spec);
    const int64_t ncols = as_matrix(spec.shape).cols;
    Tensor out = host_tensor(view.dtype, slice_shape(spec.shape, row_begin, row_count, col_begin, col_count));
    const size_t elem = dtype_size(view.dtype);
    const auto* src = static_cast<const char*>(view.data);
    auto* dst = static_cast<char*>(out.data);
    for (int64_t r = 0; r < row_count; ++r) {
      std::memcpy(dst + static_cast<size_t>(r * col_count) * elem,
                  src + static_cast<size_t>((row_begin + r) * ncols + col_begin) * elem,
                  static_cast<size_t>(col_count) * elem);
    }
    return out;
  }

 private:
  Checkpoint ckpt_;
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
    const int64_t threads = std::clamp<int64_t>(row_count * col_count / (1 << 16), 1,
                                                std::min<int64_t>(row_count, std::max(1u, std::thread::hardware_concurrency())));
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int64_t r = row_count * t / threads; r < row_count * (t + 1) / threads; ++r)
          fill_random(fill, dtype_, (row_begin + r) * ncols + col_begin, col_count,
                      static_cast<char*>(out.data) + static_cast<size_t>(r) * row_bytes);
      });
    }
    for (std::thread& th : pool) th.join();
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
