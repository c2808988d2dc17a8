// MOETRON_HOST_DEVICE marks functions that both the host compiler and nvcc's device pass
// compile, so one definition serves the CPU reference and the kernels.
#pragma once

#if defined(__CUDACC__)
#define MOETRON_HOST_DEVICE __host__ __device__
#else
#define MOETRON_HOST_DEVICE
#endif
