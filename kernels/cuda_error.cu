// The one place CUDA failures turn into moetron::Error.
#include "moetron/core/error.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace kernels {

void throw_cuda_error(const char* call, const char* what, const char* file, int line) {
  // A failed runtime call is also recorded as the thread's last error; clear it, so that the
  // next launch check reports only its own failure (sticky errors stay whatever we do).
  (void)cudaGetLastError();
  MOETRON_FAIL("CUDA error '" << what << "' in " << call << " at " << file << ":" << line);
}

}  // namespace kernels
}  // namespace moetron
