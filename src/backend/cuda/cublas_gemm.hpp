// Dense GEMMs of the CUDA backend through cuBLAS: bf16 operands, fp32 accumulation.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cstdint>

// CUBLAS_CHECK(cublasCreate(&h)): a failed status becomes a moetron::Error naming the call, the
// file and the line.
#define CUBLAS_CHECK(call)                                                                     \
  do {                                                                                         \
    cublasStatus_t cublas_check_status_ = (call);                                              \
    if (cublas_check_status_ != CUBLAS_STATUS_SUCCESS)                                         \
      ::moetron::cuda::throw_cublas_error(#call, cublas_check_status_, __FILE__, __LINE__);    \
  } while (0)

namespace moetron {
namespace cuda {

[[noreturn]] void throw_cublas_error(const char* call, cublasStatus_t status, const char* file,
                                     int line);

// out [m, n] = x [m, k] . w [n, k]^T, row-major; out is bf16 (out_f32 false) or fp32.
void gemm_nt(cublasHandle_t handle, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t m,
             int64_t n, int64_t k, void* out, bool out_f32);

}  // namespace cuda
}  // namespace moetron
