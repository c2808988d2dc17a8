// The one place CUDA failures turn into moetron::Error; and the launch policy of common.cuh.
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "common.cuh"
#include "moetron/core/error.hpp"

namespace moetron {
namespace kernels {

void throw_cuda_error(const char* call, const char* what, const char* file, int line) {
  // A failed runtime call is also recorded as the thread's last error; clear it, so that the
  // next launch check reports only its own failure (sticky errors stay whatever we do).
  (void)cudaGetLastError();
  MOETRON_FAIL("CUDA error '" << what << "' in " << call << " at " << file << ":" << line);
}

bool pdl_enabled() {
  static const bool allowed = [] {
    const char* env = std::getenv("MOETRON_PDL");
    if (env == nullptr || std::strcmp(env, "1") == 0) return true;
    MOETRON_CHECK(std::strcmp(env, "0") == 0, "MOETRON_PDL='" << env << "': expected 0 (off) or 1 (on)");
    return false;
  }();
  constexpr int kMaxDevices = 64;
  static int major[kMaxDevices] = {};  // 0: not asked yet (a device's major is never 0)
  if (!allowed) return false;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices) return false;
  if (major[device] == 0)
    CUDA_CHECK(cudaDeviceGetAttribute(&major[device], cudaDevAttrComputeCapabilityMajor, device));
  return major[device] >= 9;
}

void opt_in_dynamic_smem(const void* kernel, size_t bytes) {
  struct Granted {
    const void* kernel;
    int device;
    size_t bytes;
  };
  static std::mutex mutex;
  static std::vector<Granted> granted;  // a few kernels a process
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  for (const Granted& g : granted)
    if (g.kernel == kernel && g.device == device && g.bytes >= bytes) return;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  granted.push_back({kernel, device, bytes});
}

}  // namespace kernels
}  // namespace moetron
