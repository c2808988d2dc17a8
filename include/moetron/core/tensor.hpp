// Tensor: a typed, row-major, contiguous view of memory on one device, optionally owning it.
// Model code never reads tensor memory itself: it passes tensors to Ops (math) and to a
// Communicator (data movement), so the same code drives the CPU and CUDA backends.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moetron/core/dtype.hpp"

namespace moetron {

enum class Device : uint8_t { Cpu, Cuda };

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  Device device = Device::Cpu;
  std::shared_ptr<void> owner;  // keeps owned memory alive; empty for views

  bool defined() const { return !shape.empty(); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape.at(i < 0 ? shape.size() + i : i); }
  int ndim() const { return static_cast<int>(shape.size()); }
  // A 2-D reading: the last dimension is the row width.
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }

  template <class T>
  T* as() const { return static_cast<T*>(data); }

  // Same memory, new shape (same element count).
  Tensor reshape(std::vector<int64_t> new_shape) const;
  // Rows [start, start + count) along the first dimension (a view).
  Tensor slice_rows(int64_t start, int64_t count) const;
  std::string describe() const;  // "bf16[4, 64] on cuda"
};

// An owning host tensor (plain heap memory), for metadata, tests and I/O.
Tensor host_tensor(DType dtype, std::vector<int64_t> shape);

}  // namespace moetron
