// CudaOps' staging memory for weight uploads: page-locked host blocks, so that upload_weight's
// copy is an asynchronous DMA the host does not wait for. Blocks come in power-of-two sizes and
// return to a free list when the last tensor over them goes (upload_weight holds the tensor
// until its copy has run, through a host function on the stream); finish_weight_uploads()
// frees the list. Allocation may happen on any thread (the loader's reader thread).
#include <cuda_runtime.h>

#include <map>
#include <mutex>

#include "moetron/backend/cuda_ops.hpp"
#include "moetron/core/error.hpp"
#include "moetron/kernels.hpp"

namespace moetron {

struct CudaOps::Staging : std::enable_shared_from_this<CudaOps::Staging> {
  explicit Staging(int device_index) : device(device_index) {}
  ~Staging() { trim(); }

  Tensor tensor(DType dtype, std::vector<int64_t> shape) {
    Tensor t = unallocated(dtype, std::move(shape), Device::Cpu);
    const size_t bytes = t.nbytes();
    if (bytes == 0) return t;
    size_t block = size_t{1} << 20;
    while (block < bytes) block <<= 1;
    void* p = take(block);
    if (p == nullptr) {
      CUDA_CHECK(cudaSetDevice(device));  // this thread may not be bound to it yet
      CUDA_CHECK(cudaHostAlloc(&p, block, cudaHostAllocPortable));
    }
    t.data = p;
    // The deleter may run in a CUDA host function: it only puts the block back.
    t.owner = std::shared_ptr<void>(p, [self = shared_from_this(), block](void* q) { self->put(block, q); });
    return t;
  }

  void* take(size_t block) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = free_blocks.find(block);
    if (it == free_blocks.end()) return nullptr;
    void* p = it->second;
    free_blocks.erase(it);
    return p;
  }
  void put(size_t block, void* p) {
    std::lock_guard<std::mutex> lock(mu);
    free_blocks.emplace(block, p);
  }
  // cudaFreeHost may wait for the device, whose pending host functions may be waiting for mu.
  void trim() {
    std::multimap<size_t, void*> blocks;
    {
      std::lock_guard<std::mutex> lock(mu);
      blocks.swap(free_blocks);
    }
    for (const auto& kv : blocks) cudaFreeHost(kv.second);
  }

  const int device;
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;
};

std::shared_ptr<CudaOps::Staging> CudaOps::make_staging(int device) { return std::make_shared<Staging>(device); }

Tensor CudaOps::staging_tensor(DType dtype, std::vector<int64_t> shape) {
  return staging_->tensor(dtype, std::move(shape));
}

void CudaOps::finish_weight_uploads() {
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  staging_->trim();
}

void CudaOps::keep_until_copied(const std::shared_ptr<void>& owner) {
  if (!owner) return;
  auto* held = new std::shared_ptr<void>(owner);
  const cudaError_t status = cudaLaunchHostFunc(
      stream_, [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); }, held);
  if (status != cudaSuccess) {
    delete held;
    CUDA_CHECK(status);
  }
}

}  // namespace moetron
