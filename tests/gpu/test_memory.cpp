// CudaOps memory: weight upload conversions, the temporary arena, copies.
#include <cstring>

#include "gpu_test_util.hpp"
#include "moetron/core/error.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaMemory = GpuVsCpu;

TEST_F(CudaMemory, UploadWeightConvertsEverySourceDtypeToBf16) {
  const std::vector<float> values = random_values(1000, 3.0f);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    Tensor host = host_tensor(dt, {10, 100});
    std::vector<float> expect(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      if (dt == DType::F32) {
        host.as<float>()[i] = values[i];
      } else if (dt == DType::F16) {
        host.as<uint16_t>()[i] = float_to_f16(values[i]);
      } else {
        host.as<uint16_t>()[i] = float_to_bf16(values[i]);
      }
      expect[i] = bf16_to_float(float_to_bf16(load_as_float(host.data, dt, i)));
    }
    Tensor w = gpu().upload_weight(host);
    EXPECT_EQ(w.dtype, DType::BF16);
    EXPECT_EQ(w.shape, host.shape);
    EXPECT_EQ(read(gpu(), w), expect) << dtype_name(dt);
  }
}

TEST_F(CudaMemory, UploadWeightRejectsIntegers) {
  Tensor host = host_tensor(DType::I32, {4});
  EXPECT_THROW(gpu().upload_weight(host), Error);
}

TEST_F(CudaMemory, TempsRepeatTheirAddressesAfterReset) {
  std::vector<void*> first, second;
  for (int pass = 0; pass < 2; ++pass) {
    gpu().reset_temps();
    auto& seen = pass == 0 ? first : second;
    seen.push_back(gpu().temp(DType::BF16, {17, 96}).data);
    seen.push_back(gpu().temp(DType::F32, {3}).data);
    seen.push_back(gpu().temp(DType::I32, {129, 8}).data);
  }
  EXPECT_EQ(first, second);
  for (void* p : first) EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
}

TEST_F(CudaMemory, ExhaustedArenaIsAnError) {
  CudaOps small(0, 4096);
  small.temp(DType::BF16, {1024});
  try {
    small.temp(DType::BF16, {2048});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("arena"), std::string::npos) << e.what();
  }
  small.reset_temps();
  EXPECT_NO_THROW(small.temp(DType::BF16, {2048}));
}

TEST_F(CudaMemory, CopyFillAndToFloat) {
  Pair a = random_activation({3, 64});
  Tensor b = gpu().alloc(DType::BF16, {3, 64});
  poison(gpu(), b);
  gpu().copy(a.gpu, b);
  EXPECT_EQ(read(gpu(), b), read(gpu(), a.gpu));
  Tensor f = gpu().alloc(DType::F32, {3, 64});
  poison(gpu(), f);
  gpu().to_float(a.gpu, f);
  EXPECT_EQ(read(gpu(), f), read(cpu(), a.cpu));
  gpu().fill_zero(b);
  for (float v : read(gpu(), b)) ASSERT_EQ(v, 0.0f);
  Tensor mismatched = gpu().alloc(DType::F32, {3, 64});
  EXPECT_THROW(gpu().copy(a.gpu, mismatched), Error);
}

// The vocabulary slices of tp ranks laid side by side into whole logit rows (odd widths; a
// padded slice gives only its first columns, its real tokens).
TEST_F(CudaMemory, CopyColumnsMatchesTheHost) {
  for (int64_t rows : {1, 7}) {
    Pair dst = floats(random_values(rows * 101), {rows, 101});
    Pair block = floats(random_values(rows * 33), {rows, 33});
    for (int64_t width : {33, 30, 0}) {
      for (int64_t col : {0, 17, 68}) {
        cpu().copy_columns(block.cpu, width, dst.cpu, col);
        gpu().copy_columns(block.gpu, width, dst.gpu, col);
        EXPECT_EQ(read(gpu(), dst.gpu), read(cpu(), dst.cpu))
            << rows << " rows, " << width << " columns at column " << col;
      }
    }
    EXPECT_THROW(gpu().copy_columns(block.gpu, 33, dst.gpu, 69), Error);  // past the last column
    EXPECT_THROW(gpu().copy_columns(block.gpu, 34, dst.gpu, 0), Error);   // wider than the source
  }
}

TEST_F(CudaMemory, CudaErrorsNameTheCall) {
  try {
    CUDA_CHECK(cudaSetDevice(-1));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cudaSetDevice"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
