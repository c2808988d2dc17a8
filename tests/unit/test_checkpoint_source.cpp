// Reading weight slices from a safetensors checkpoint (the loader's source): large row and
// column slices come out exactly as stored, a stray dtype is converted, and a non-finite value
// is found wherever it lies in the slice (near its end too) and nowhere outside it. (Written
// for a multi-threaded copy that was measured slower at startup and taken back; the contract
// stays for the next attempt, perf/NOTES.md.)
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "model_test_helpers.hpp"
#include "moetron/core/dtype.hpp"
#include "moetron/model/safetensors.hpp"
#include "moetron/model/checkpoint_source.hpp"

namespace moetron {
namespace {

using testing::TempDir;
using testing::throws_error;

constexpr int64_t kRows = 700, kCols = 301;  // 210,700 elements

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint16_t> v(n);
  for (uint16_t& x : v) x = float_to_bf16(dist(rng));
  return v;
}

struct CheckpointFixture {
  TempDir dir{"ckpt-source"};
  std::vector<uint16_t> w = random_bf16(kRows * kCols, 1);
  std::vector<uint16_t> bad = random_bf16(kRows * kCols, 2);
  std::vector<float> f32 = std::vector<float>(kRows * 3);

  CheckpointFixture() {
    bad[static_cast<size_t>(690 * kCols + 299)] = 0x7fc0;  // a bf16 NaN near the end
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
    for (float& x : f32) x = dist(rng);
    write_safetensors(dir.file("model.safetensors"),
                      {{"w", DType::BF16, {kRows, kCols}, w.data(), {}},
                       {"bad", DType::BF16, {kRows, kCols}, bad.data(), {}},
                       {"f32", DType::F32, {kRows, 3}, f32.data(), {}}});
  }
};

TensorSpec spec(const std::string& name, std::vector<int64_t> shape) { return {name, std::move(shape), WeightKind::Linear}; }

TEST(CheckpointSource, LargeSlicesMatchTheFileExactly) {
  CheckpointFixture fx;
  auto source = open_checkpoint_source(fx.dir.str());
  const int64_t r0 = 3, rn = 650, c0 = 7, cn = 250;
  Tensor t = source->read(spec("w", {kRows, kCols}), r0, rn, c0, cn);
  ASSERT_EQ(t.dtype, DType::BF16);
  ASSERT_EQ(t.shape, (std::vector<int64_t>{rn, cn}));
  const auto* got = static_cast<const uint16_t*>(t.data);
  int64_t mismatches = 0;
  for (int64_t r = 0; r < rn; ++r)
    for (int64_t c = 0; c < cn; ++c) mismatches += got[r * cn + c] != fx.w[static_cast<size_t>((r0 + r) * kCols + c0 + c)];
  EXPECT_EQ(mismatches, 0);
  Tensor whole = source->read_all(spec("w", {kRows, kCols}));
  EXPECT_EQ(std::memcmp(whole.data, fx.w.data(), fx.w.size() * 2), 0);
}

TEST(CheckpointSource, StrayFloat32TensorIsConvertedToTheCheckpointsDtype) {
  CheckpointFixture fx;
  auto source = open_checkpoint_source(fx.dir.str());
  Tensor t = source->read(spec("f32", {kRows, 3}), 0, -1, 1, 2);
  ASSERT_EQ(t.dtype, DType::BF16);  // two bf16 tensors against one f32
  const auto* got = static_cast<const uint16_t*>(t.data);
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < 2; ++c)
      ASSERT_EQ(got[r * 2 + c], float_to_bf16(fx.f32[static_cast<size_t>(r * 3 + 1 + c)])) << r << "," << c;
}

TEST(CheckpointSource, NonFiniteValueIsFoundInAnyThreadsRangeAndOnlyInTheSlice) {
  CheckpointFixture fx;
  auto source = open_checkpoint_source(fx.dir.str());
  EXPECT_TRUE(throws_error([&] { source->read_all(spec("bad", {kRows, kCols})); },
                           {"model.safetensors", "tensor 'bad'", "non-finite value (nan)"}));
  EXPECT_TRUE(throws_error([&] { source->read(spec("bad", {kRows, kCols}), 600, 100, 250, 51); },
                           {"tensor 'bad'", "rows from 600, columns from 250"}));
  // Rows before the NaN, and the columns beside it, read cleanly.
  EXPECT_NO_THROW(source->read(spec("bad", {kRows, kCols}), 0, 690, 0, -1));
  EXPECT_NO_THROW(source->read(spec("bad", {kRows, kCols}), 0, -1, 0, 299));
  Tensor empty = source->read(spec("w", {kRows, kCols}), 5, 0, 0, -1);
  EXPECT_EQ(empty.numel(), 0);
}

}  // namespace
}  // namespace moetron
