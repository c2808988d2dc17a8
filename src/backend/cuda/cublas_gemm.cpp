#include "cublas_gemm.hpp"

#include <limits>

#include "moetron/core/error.hpp"

namespace moetron {
namespace cuda {

void throw_cublas_error(const char* call, cublasStatus_t status, const char* file, int line) {
  MOETRON_FAIL("cuBLAS error " << cublasGetStatusName(status) << " ('"
                               << cublasGetStatusString(status) << "') in " << call << " at "
                               << file << ":" << line);
}

void gemm_nt(cublasHandle_t handle, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t m,
             int64_t n, int64_t k, void* out, bool out_f32) {
  if (m == 0 || n == 0) return;
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  MOETRON_CHECK(m <= kMax && n <= kMax && k <= kMax,
                "linear: a GEMM of " << m << " x " << n << " x " << k
                                     << " exceeds cuBLAS's 32-bit dimensions");
  // cuBLAS is column-major: the row-major out [m, n] is the column-major out^T [n, m] =
  // w [n, k] . x^T, and the row-major w [n, k] is a column-major [k, n] matrix, used transposed.
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                            static_cast<int>(m), static_cast<int>(k), &alpha, w, CUDA_R_16BF,
                            static_cast<int>(k), x, CUDA_R_16BF, static_cast<int>(k), &beta, out,
                            out_f32 ? CUDA_R_32F : CUDA_R_16BF, static_cast<int>(n),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace cuda
}  // namespace moetron
