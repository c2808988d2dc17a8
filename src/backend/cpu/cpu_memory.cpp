// CpuOps memory: host heap tensors; "device" copies are memcpy.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "cpu_ops.hpp"

namespace moetron {

namespace {
void copy_bytes(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);  // memcpy with a null pointer is undefined even for 0 bytes
}
}  // namespace

Tensor CpuOps::upload_weight(const Tensor& host) {
  MOETRON_CHECK(is_float_dtype(host.dtype),
                "cannot use a " << host.describe() << " tensor as a weight (expected F32, F16 or BF16)");
  MOETRON_ASSERT(host.device == Device::Cpu);
  Tensor out = host_tensor(DType::F32, host.shape);
  if (out.numel()) convert_to_float(host.data, host.dtype, out.as<float>(), out.numel());
  return out;
}

Tensor CpuOps::alloc(DType dtype, std::vector<int64_t> shape) {
  return host_tensor(dtype, std::move(shape));
}

Tensor CpuOps::temp(DType dtype, std::vector<int64_t> shape) {
  Tensor block = host_tensor(dtype, std::move(shape));
  temp_blocks_.push_back(block.owner);
  block.owner.reset();
  temp_used_before_.push_back(temp_used_);
  temp_used_ += temp_arena_bytes(block.nbytes());
  temp_peak_ = std::max(temp_peak_, temp_used_);
  return block;
}

void CpuOps::reset_temps() {
  temp_blocks_.clear();
  temp_used_before_.clear();
  temp_used_ = 0;
}

void CpuOps::temp_release(size_t mark) {
  MOETRON_ASSERT(mark <= temp_blocks_.size());
  if (mark < temp_blocks_.size()) temp_used_ = temp_used_before_[mark];
  temp_blocks_.resize(mark);  // frees the blocks handed out since the mark
  temp_used_before_.resize(mark);
}

// The Ops contract (ops_contract.cpp) has checked devices, dtypes and sizes of what follows.
void CpuOps::do_copy_from_host(Tensor& dst, const void* src) {
  copy_bytes(dst.data, src, dst.nbytes());
}

void CpuOps::do_to_host(const Tensor& src, void* dst) {
  copy_bytes(dst, src.data, src.nbytes());
}

void CpuOps::do_copy(const Tensor& src, Tensor& dst) {
  if (src.data != dst.data) std::memmove(dst.data, src.data, src.nbytes());
}

void CpuOps::do_copy_columns(const Tensor& src, int64_t width, Tensor& dst, int64_t col) {
  const size_t elem = dtype_size(src.dtype), bytes = static_cast<size_t>(width) * elem;
  const size_t src_pitch = static_cast<size_t>(src.cols()) * elem;
  const char* from = static_cast<const char*>(src.data);
  char* to = static_cast<char*>(dst.data);
  for (int64_t r = 0; r < src.rows(); ++r)
    std::memcpy(to + (static_cast<size_t>(r * dst.cols() + col)) * elem,
                from + static_cast<size_t>(r) * src_pitch, bytes);
}

void CpuOps::do_take_columns(const Tensor& src, int64_t col, int64_t width, Tensor& dst) {
  const size_t elem = dtype_size(src.dtype), bytes = static_cast<size_t>(width) * elem;
  const char* from = static_cast<const char*>(src.data);
  char* to = static_cast<char*>(dst.data);
  for (int64_t r = 0; r < src.rows(); ++r)
    std::memcpy(to + static_cast<size_t>(r) * bytes,
                from + static_cast<size_t>(r * src.cols() + col) * elem, bytes);
}

void CpuOps::do_fill_zero(Tensor& t) {
  if (t.nbytes()) std::memset(t.data, 0, t.nbytes());
}

namespace {
double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void CpuOps::begin_timed_section() { section_start_ = steady_seconds(); }

void CpuOps::end_timed_section() {
  MOETRON_ASSERT(section_start_ >= 0);
  timed_seconds_ += steady_seconds() - section_start_;
  section_start_ = -1;
}

}  // namespace moetron
