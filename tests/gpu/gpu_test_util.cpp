#include "gpu_test_util.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "moetron/core/dtype.hpp"

namespace moetron {
namespace gputest {

std::unique_ptr<Ops> GpuVsCpu::cpu_;
std::unique_ptr<CudaOps> GpuVsCpu::gpu_;

void GpuVsCpu::SetUpTestSuite() {
  if (!cpu_) cpu_ = make_cpu_ops();
  if (!gpu_) gpu_ = std::make_unique<CudaOps>(0, size_t{1} << 30);
}

void GpuVsCpu::TearDownTestSuite() {
  cpu_.reset();
  gpu_.reset();
}

void GpuVsCpu::SetUp() {
  cpu_->reset_temps();
  gpu_->reset_temps();
}

std::vector<float> GpuVsCpu::random_values(int64_t n, float scale) {
  return random_bf16_values(rng_, n, scale);
}

std::vector<int32_t> GpuVsCpu::random_ints(int64_t n, int32_t lo, int32_t hi) {
  std::uniform_int_distribution<int32_t> dist(lo, hi);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = dist(rng_);
  return v;
}

Pair GpuVsCpu::activation(const std::vector<float>& values, std::vector<int64_t> shape) {
  Pair p;
  p.cpu = cpu_->alloc(DType::F32, shape);
  cpu_->copy_from_host(p.cpu, values.data());
  p.gpu = gpu_->alloc(DType::BF16, shape);
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = float_to_bf16(values[i]);
  gpu_->copy_from_host(p.gpu, bits.data());
  return p;
}

Pair GpuVsCpu::random_activation(std::vector<int64_t> shape, float scale) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return activation(random_values(n, scale), std::move(shape));
}

Pair GpuVsCpu::weight(const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor host = host_tensor(DType::F32, std::move(shape));
  std::memcpy(host.data, values.data(), host.nbytes());
  return {cpu_->upload_weight(host), gpu_->upload_weight(host)};
}

Pair GpuVsCpu::random_weight(std::vector<int64_t> shape, float scale) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return weight(random_values(n, scale), std::move(shape));
}

Pair GpuVsCpu::ints(const std::vector<int32_t>& values, std::vector<int64_t> shape) {
  Pair p{cpu_->alloc(DType::I32, shape), gpu_->alloc(DType::I32, shape)};
  cpu_->copy_from_host(p.cpu, values.data());
  gpu_->copy_from_host(p.gpu, values.data());
  return p;
}

Pair GpuVsCpu::floats(const std::vector<float>& values, std::vector<int64_t> shape) {
  Pair p{cpu_->alloc(DType::F32, shape), gpu_->alloc(DType::F32, shape)};
  cpu_->copy_from_host(p.cpu, values.data());
  gpu_->copy_from_host(p.gpu, values.data());
  return p;
}

Pair GpuVsCpu::output(DType gpu_dtype, std::vector<int64_t> shape) {
  const DType cpu_dtype = gpu_dtype == DType::BF16 ? DType::F32 : gpu_dtype;
  Pair p{cpu_->alloc(cpu_dtype, shape), gpu_->alloc(gpu_dtype, shape)};
  cpu_->fill_zero(p.cpu);
  poison(*gpu_, p.gpu);
  return p;
}

void GpuVsCpu::poison(Ops& ops, Tensor& t) {
  std::vector<unsigned char> bytes(t.nbytes(), 0xff);
  ops.copy_from_host(t, bytes.data());
}

std::vector<float> GpuVsCpu::read(Ops& ops, const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::F32) {
    ops.to_host(t, out.data());
  } else {
    EXPECT_EQ(t.dtype, DType::BF16);
    std::vector<uint16_t> bits(out.size());
    ops.to_host(t, bits.data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(bits[i]);
  }
  return out;
}

std::vector<int32_t> GpuVsCpu::read_ints(Ops& ops, const Tensor& t) {
  std::vector<int32_t> out(static_cast<size_t>(t.numel()));
  ops.to_host(t, out.data());
  return out;
}

void GpuVsCpu::run_cases(const std::vector<OpCase>& cases) { run_cases(cases, {{"", [](CudaOps&) {}}}); }

void GpuVsCpu::run_cases(const std::vector<OpCase>& cases, const std::vector<GpuVariant>& variants) {
  ASSERT_FALSE(cases.empty());
  ASSERT_FALSE(variants.empty());
  // MOETRON_TEST_PROGRESS=1 names each case before it runs: a case that hangs is then known.
  const char* progress_env = std::getenv("MOETRON_TEST_PROGRESS");
  const bool progress = progress_env != nullptr && std::string(progress_env) == "1";
  for (size_t i = 0; i < cases.size(); ++i) {
    const OpCase& c = cases[i];
    SCOPED_TRACE(c.name);
    if (progress) std::fprintf(stderr, "  case %s\n", c.name.c_str());
    const uint64_t seed = 20261124 + i;
    cpu_->reset_temps();
    CaseInputs on_cpu(*cpu_, seed);
    const CaseOutputs ref = c.run(on_cpu);  // the reference once, for every variant
    ASSERT_FALSE(ref.empty());
    for (const GpuVariant& v : variants) {
      SCOPED_TRACE(v.name);
      const auto start = std::chrono::steady_clock::now();
      v.setup(*gpu_);
      gpu_->reset_temps();
      CaseInputs on_gpu(*gpu_, seed);
      const CaseOutputs got = c.run(on_gpu);
      if (progress)
        std::fprintf(stderr, "    %s%s%.0f ms\n", v.name.c_str(), v.name.empty() ? "" : ": ",
                     std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      ASSERT_EQ(got.size(), ref.size());
      for (size_t o = 0; o < ref.size(); ++o) {
        const std::string what = c.name + (v.name.empty() ? "" : " (" + v.name + ")") + ": " + ref[o].name;
        if (ref[o].tolerance == 0.0)
          expect_equal(got[o].values, ref[o].values, what);
        else
          expect_close(got[o].values, ref[o].values, ref[o].tolerance, what);
      }
    }
  }
}

double relative_l2(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return INFINITY;
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    const double d = static_cast<double>(out[i]) - ref[i];
    diff += d * d;
    norm += static_cast<double>(ref[i]) * ref[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

void expect_close(const std::vector<float>& out, const std::vector<float>& ref, double tol,
                  const std::string& what) {
  const double err = relative_l2(out, ref);
  EXPECT_LE(err, tol) << what << ": relative L2 error " << err << " over " << out.size()
                      << " elements";
}

void expect_equal(const std::vector<float>& out, const std::vector<float>& ref,
                  const std::string& what) {
  ASSERT_EQ(out.size(), ref.size()) << what;
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < out.size(); ++i)
    if (!(out[i] == ref[i]) && differ++ == 0) first = i;
  EXPECT_EQ(differ, 0u) << what << ": " << differ << " of " << out.size()
                        << " values differ, the first at " << first << ": "
                        << (differ ? out[first] : 0.0f) << " vs " << (differ ? ref[first] : 0.0f);
}

}  // namespace gputest
}  // namespace moetron
