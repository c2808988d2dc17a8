// Host conversions between float and the activation dtypes (core/dtype.hpp).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "moetron/core/dtype.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace {

std::vector<float> random_floats(size_t n) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(DType, ConvertFromFloatRoundsAsTheScalarConversionsAndRoundTrips) {
  const std::vector<float> src = random_floats(1000);
  std::vector<uint16_t> half(src.size());
  std::vector<float> back(src.size());
  convert_from_float(src.data(), DType::BF16, half.data(), src.size());
  convert_to_float(half.data(), DType::BF16, back.data(), src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(half[i], float_to_bf16(src[i])) << i;
    ASSERT_NEAR(back[i], src[i], std::abs(src[i]) * (1.0f / 256)) << i;  // 8 significant bits
  }
  convert_from_float(src.data(), DType::F16, half.data(), src.size());
  convert_to_float(half.data(), DType::F16, back.data(), src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(half[i], float_to_f16(src[i])) << i;
    ASSERT_NEAR(back[i], src[i], std::abs(src[i]) * (1.0f / 2048) + 1e-7f) << i;  // 11 significant bits
  }
  std::vector<float> same(src.size());
  convert_from_float(src.data(), DType::F32, same.data(), src.size());
  EXPECT_EQ(same, src);
  int32_t ints[2];
  EXPECT_THROW(convert_from_float(src.data(), DType::I32, ints, 2), Error);
}

}  // namespace
}  // namespace moetron
