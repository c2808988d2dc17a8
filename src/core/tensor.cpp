#include "moetron/core/tensor.hpp"

#include <cstdlib>
#include <sstream>

#include "moetron/core/error.hpp"

namespace moetron {

Tensor Tensor::reshape(std::vector<int64_t> new_shape) const {
  Tensor t = *this;
  t.shape = std::move(new_shape);
  MOETRON_ASSERT(t.numel() == numel());
  return t;
}

Tensor Tensor::slice_rows(int64_t start, int64_t count) const {
  MOETRON_ASSERT(!shape.empty() && start >= 0 && count >= 0 && start + count <= shape[0]);
  Tensor t = *this;
  int64_t row_elems = shape[0] == 0 ? 0 : numel() / shape[0];
  t.data = static_cast<char*>(data) + static_cast<size_t>(start * row_elems) * dtype_size(dtype);
  t.shape[0] = count;
  return t;
}

std::string Tensor::describe() const {
  std::ostringstream os;
  os << dtype_name(dtype) << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "] on " << (device == Device::Cpu ? "cpu" : "cuda");
  return os.str();
}

Tensor host_tensor(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.device = Device::Cpu;
  size_t bytes = t.nbytes();
  // 64-byte alignment so vectorised loops and MPI buffers are happy.
  void* p = bytes ? std::aligned_alloc(64, (bytes + 63) / 64 * 64) : nullptr;
  if (bytes && !p) MOETRON_FAIL("out of host memory allocating " << bytes << " bytes");
  t.data = p;
  t.owner = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  return t;
}

}  // namespace moetron
