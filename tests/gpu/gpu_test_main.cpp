// The gpu-labelled test binary: every test compares a CudaOps operator with the CPU reference.
// Exits 77 (ctest: skipped) where no CUDA device is present. `--fixtures DIR` names the HF
// fixtures folder (tests/common/fixtures_root.hpp says where they are looked for without it).
#include <gtest/gtest.h>

#include <cstdio>
#include <exception>

#include "../common/fixtures_root.hpp"
#include "moetron/backend/cuda_ops.hpp"

int main(int argc, char** argv) {
  try {
    moetron::test::take_fixtures_option(argc, argv);
    if (!moetron::test::fixtures_option().empty()) moetron::test::fixtures_root();  // checks it
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moetron_gpu_tests: %s\n", e.what());
    return 2;
  }
  if (!moetron::cuda_device_available()) {
    std::printf("no CUDA device: skipping the GPU tests\n");
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
