#include <cstring>

#include "moetron/core/error.hpp"
#include "moetron/model/safetensors.hpp"
#include "moetron/model/weight_source.hpp"

namespace moetron {
namespace {

class CheckpointSource : public WeightSource {
 public:
  explicit CheckpointSource(const std::string& dir) : ckpt_(Checkpoint::open(dir)) {}

  Tensor read(const std::string& name, const std::vector<int64_t>& full_shape, int64_t row_begin,
              int64_t row_count, int64_t col_begin, int64_t col_count) override {
    const TensorView view = ckpt_.get_checked(name, full_shape);
    // Viewed as 2-D: a 1-D tensor is one row.
    const int64_t nrows = full_shape.size() == 1 ? 1 : full_shape[0];
    const int64_t ncols = nrows == 0 ? 0 : view.numel() / nrows;
    if (row_count < 0) row_count = nrows - row_begin;
    if (col_count < 0) col_count = ncols - col_begin;
    MOETRON_ASSERT(row_begin >= 0 && row_begin + row_count <= nrows);
    MOETRON_ASSERT(col_begin >= 0 && col_begin + col_count <= ncols);
    std::vector<int64_t> shape = full_shape.size() == 1
                                     ? std::vector<int64_t>{col_count}
                                     : std::vector<int64_t>{row_count, col_count};
    Tensor out = host_tensor(view.dtype, shape);
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

}  // namespace

std::unique_ptr<WeightSource> open_checkpoint_source(const std::string& dir) {
  return std::make_unique<CheckpointSource>(dir);
}

}  // namespace moetron
