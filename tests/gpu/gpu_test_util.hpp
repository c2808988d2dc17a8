// Shared pieces of the GPU tests: the two backends, random bf16-exact inputs placed on both,
// poisoned outputs, and the relative-L2 comparison.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/backend/cuda_ops.hpp"
#include "op_table.hpp"

namespace moetron {
namespace gputest {

// Relative L2 error ||out - ref|| / ||ref|| that bf16 outputs must meet (fp32 math, one or a
// few bf16 roundings of the result and of intermediates).
constexpr double kBf16Tolerance = 1e-2;

// One tensor with the same values on the CPU reference (F32) and on the GPU (bf16 for
// activations and weights, as given for integers and F32 tensors).
struct Pair {
  Tensor cpu, gpu;
};

class GpuVsCpu : public testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;  // rewinds both backends' temporaries

  static Ops& cpu() { return *cpu_; }
  static CudaOps& gpu() { return *gpu_; }

  // Uniform values in [-scale, scale], each exactly representable in bf16, so that both
  // backends start from the same numbers.
  std::vector<float> random_values(int64_t n, float scale = 1.0f);
  std::vector<int32_t> random_ints(int64_t n, int32_t lo, int32_t hi);  // [lo, hi]

  Pair activation(const std::vector<float>& values, std::vector<int64_t> shape);
  Pair random_activation(std::vector<int64_t> shape, float scale = 1.0f);
  Pair weight(const std::vector<float>& values, std::vector<int64_t> shape);
  Pair random_weight(std::vector<int64_t> shape, float scale = 1.0f);
  Pair ints(const std::vector<int32_t>& values, std::vector<int64_t> shape);
  Pair floats(const std::vector<float>& values, std::vector<int64_t> shape);  // F32 on both

  // Outputs: the CPU's zeroed, the GPU's filled with all-ones bytes (NaN in bf16 and F32, -1 as
  // I32), so any element a kernel fails to write shows up.
  Pair output(DType gpu_dtype, std::vector<int64_t> shape);
  static void poison(Ops& ops, Tensor& t);

  static std::vector<float> read(Ops& ops, const Tensor& t);  // F32/BF16 as float
  static std::vector<int32_t> read_ints(Ops& ops, const Tensor& t);

  // Runs every case on the CPU reference and on the GPU from the same seed and compares each
  // output within its case's tolerance (op_table.hpp).
  static void run_cases(const std::vector<OpCase>& cases);
  // The same, with the GPU side run once per variant (set up on the CudaOps before each run)
  // against one CPU reference.
  struct GpuVariant {
    std::string name;
    std::function<void(CudaOps&)> setup;
  };
  static void run_cases(const std::vector<OpCase>& cases, const std::vector<GpuVariant>& variants);

  std::mt19937_64 rng_{20261124};

 private:
  static std::unique_ptr<Ops> cpu_;
  static std::unique_ptr<CudaOps> gpu_;
};

// Relative L2 error of out against ref; infinite if out holds a NaN or an infinity.
double relative_l2(const std::vector<float>& out, const std::vector<float>& ref);

// EXPECT that out matches ref within tol (relative L2), naming the case.
void expect_close(const std::vector<float>& out, const std::vector<float>& ref, double tol,
                  const std::string& what);

// EXPECT that out equals ref value for value (NaN never equals), naming the first difference.
void expect_equal(const std::vector<float>& out, const std::vector<float>& ref,
                  const std::string& what);

}  // namespace gputest
}  // namespace moetron
