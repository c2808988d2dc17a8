// The gpu-labelled test binary: every test compares a CudaOps operator with the CPU reference.
// Exits 77 (ctest: skipped) where no CUDA device is present.
#include <gtest/gtest.h>

#include <cstdio>

#include "moetron/backend/cuda_ops.hpp"

int main(int argc, char** argv) {
  if (!moetron::cuda_device_available()) {
    std::printf("no CUDA device: skipping the GPU tests\n");
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
