// Table-driven backend comparisons: an OpCase builds random inputs on a given Ops, runs one
// operator there and returns its outputs as host values; GpuVsCpu::run_cases runs every case
// on CpuOps (the reference) and on CudaOps from the same seed and compares the outputs, each
// with the tolerance its case states (0: bit-exact).
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"

namespace moetron {
namespace gputest {

// n values uniform in [-scale, scale], exact in bf16 and never zero (a zero hides an unwritten
// output or a wrong index), for every GPU-vs-CPU comparison.
std::vector<float> random_bf16_values(std::mt19937_64& rng, int64_t n, float scale);

// The inputs of one case on one backend. Values come from a generator seeded per case, so the
// same calls in the same order give both backends the same numbers; every float is non-zero
// and exactly representable in bf16, so the CPU (F32) and the GPU (BF16) start equal.
class CaseInputs {
 public:
  CaseInputs(Ops& ops, uint64_t seed) : ops(ops), rng(seed) {}

  std::vector<float> values(int64_t n, float scale = 1.0f);  // uniform in [-scale, scale]
  std::vector<int32_t> ints(int64_t n, int32_t lo, int32_t hi);  // uniform in [lo, hi]

  // Activations and weights in the backend's dtype (weights through upload_weight).
  Tensor activation(const std::vector<float>& v, std::vector<int64_t> shape);
  Tensor activation(std::vector<int64_t> shape, float scale = 1.0f);
  Tensor weight(const std::vector<float>& v, std::vector<int64_t> shape);
  Tensor weight(std::vector<int64_t> shape, float scale = 1.0f);
  Tensor i32(const std::vector<int32_t>& v, std::vector<int64_t> shape);
  Tensor i64(const std::vector<int64_t>& v, std::vector<int64_t> shape);
  Tensor f32(const std::vector<float>& v, std::vector<int64_t> shape);
  // Outputs, filled with all-ones bytes (NaN as bf16 and F32, -1 as integers) so an element
  // an operator fails to write shows up.
  Tensor output(DType dtype, std::vector<int64_t> shape);
  Tensor output_activation(std::vector<int64_t> shape);

  Ops& ops;
  std::mt19937_64 rng;
};

// Any tensor read back as floats (F32, BF16, I32, I64; integers of the tests are exact).
std::vector<float> read_as_float(Ops& ops, const Tensor& t);

struct CaseOutput {
  std::string name;
  std::vector<float> values;
  double tolerance;  // relative L2 error allowed against the CPU; 0: every value equal
};
using CaseOutputs = std::vector<CaseOutput>;

struct OpCase {
  std::string name;  // the operator and its shapes
  std::function<CaseOutputs(CaseInputs&)> run;
};

}  // namespace gputest
}  // namespace moetron
