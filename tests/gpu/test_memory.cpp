// CudaOps memory: weight upload conversions, the temporary arena, and the copies against the
// CPU reference (a table, op_table.hpp).
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

// Dummy weights made on the device are, bit for bit, what the host generator writes in the
// source dtype and upload_weight makes of it (the CPU backend's generate_weight, rounded):
// slices of wide rows (row stride past the columns), odd widths, an index past 2^32, zero
// padding, every source dtype.
TEST_F(CudaMemory, GeneratedWeightsMatchTheHostGenerator) {
  RandomFill fill;
  fill.key = 0x9E3779B97F4A7C15ull;
  fill.multiplier = 0.37f / static_cast<float>(kCenteredStd);
  fill.offset = 0.25f;
  RandomFill other = fill;
  other.key = 12345;
  std::vector<GeneratedRows> parts(4);
  parts[0] = {fill, 3, 1000, 7, 33, false};              // 7 rows of 33 out of rows 1000 wide
  parts[1] = {other, (int64_t{1} << 32) + 5, 33, 2, 33, false};  // whole rows, 64-bit indices
  parts[2] = {fill, 0, 0, 3, 33, true};                  // padding
  parts[3] = {fill, 4099, 4096, 1, 33, false};
  const std::vector<int64_t> shape = {13, 33};
  const bool initial = gpu().generate_on_device();
  for (DType dt : {DType::BF16, DType::F16, DType::F32}) {
    // The host's weight: the CPU backend's (generated in the source dtype, then held as float),
    // rounded to bf16 as upload_weight does.
    std::vector<float> expect = read(cpu(), cpu().generate_weight(parts, dt, shape));
    for (float& v : expect) v = bf16_to_float(float_to_bf16(v));
    for (bool on_device : {true, false}) {
      gpu().set_generate_on_device(on_device);
      Tensor w = gpu().generate_weight(parts, dt, shape);
      EXPECT_EQ(w.dtype, DType::BF16);
      EXPECT_EQ(w.shape, shape);
      EXPECT_EQ(read(gpu(), w), expect) << dtype_name(dt) << (on_device ? " on the device" : " on the host");
    }
  }
  gpu().set_generate_on_device(initial);
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

std::vector<float> host_of(CaseInputs& in, const Tensor& t) { return read_as_float(in.ops, t); }

// Copies move values: every case is exact. (Their wrong-argument errors are in the Ops contract
// table, tests/common/ops_contract_cases.hpp.)
TEST_F(CudaMemory, CopyFillAndToFloat) {
  run_cases({
      {"copy [3, 64]", [](CaseInputs& in) {
        Tensor a = in.activation({3, 64});
        Tensor b = in.output_activation({3, 64});
        in.ops.copy(a, b);
        return CaseOutputs{{"dst", host_of(in, b), 0.0}};
      }},
      {"to_float [3, 64]", [](CaseInputs& in) {
        Tensor a = in.activation({3, 64});
        Tensor f = in.output(DType::F32, {3, 64});
        in.ops.to_float(a, f);
        return CaseOutputs{{"out", host_of(in, f), 0.0}};
      }},
      {"fill_zero [3, 64]", [](CaseInputs& in) {
        Tensor b = in.activation({3, 64});
        in.ops.fill_zero(b);
        return CaseOutputs{{"t", host_of(in, b), 0.0}};
      }},
  });
}

// The vocabulary slices of tp ranks laid side by side into whole logit rows (odd widths; a
// padded slice gives only its first columns, its real tokens), one block after another into the
// same rows.
TEST_F(CudaMemory, CopyColumnsMatchesTheHost) {
  std::vector<OpCase> cases;
  for (int64_t rows : {1, 7}) {
    cases.push_back({"copy_columns " + std::to_string(rows) + " rows of 33 (widths 33, 30, 0) into 101 at 0, 17, 68",
                     [rows](CaseInputs& in) {
      Tensor dst = in.f32(in.values(rows * 101), {rows, 101});
      Tensor block = in.f32(in.values(rows * 33), {rows, 33});
      CaseOutputs outputs;
      for (int64_t width : {33, 30, 0}) {
        for (int64_t col : {0, 17, 68}) {
          in.ops.copy_columns(block, width, dst, col);
          outputs.push_back({"dst after " + std::to_string(width) + " columns at column " + std::to_string(col),
                             host_of(in, dst), 0.0});
        }
      }
      return outputs;
    }});
  }
  run_cases(cases);
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
