// The deterministic weight generator of random ("dummy") checkpoints: every element is a pure
// function of a per-tensor key and its index, so any rank, and the device, can regenerate any
// slice of any tensor on its own (model/random_checkpoint.hpp makes the keys from seed and
// tensor name; Ops::generate_weight fills weights in place with it). The exact function, which a
// device implementation must follow bit for bit:
//
//   key      = mix64(seed * 0x9E3779B97F4A7C15 ^ fnv1a64(name))      once per tensor, on the host
//   bits     = mix64(key + (index + 1) * 0xD1B54A32D192ED03)         per element (uint64 wraparound)
//   sum      = bits[0:16) + bits[16:32) + bits[32:48) + bits[48:64)  four 16-bit unsigned integers
//   centered = 2 * sum - 4 * 65535                                   an even int32 in [-262140, 262140]
//   value    = offset + float(centered) * multiplier                 float32, two rounded ops, no FMA
//   stored   = round-to-nearest-even to the checkpoint dtype (bf16 / f16), or the float itself
//
//   mix64(z): z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31
//   fnv1a64(s): h = 0xCBF29CE484222325; for each byte b: h = (h ^ b) * 0x100000001B3
//
// `centered` is a sum of four uniforms (Irwin-Hall), which is close to normal with standard
// deviation kCenteredStd; multiplier = float(scale / kCenteredStd), computed in double on the host.
#pragma once
#include <cstdint>

#include "moetron/core/dtype.hpp"
#include "moetron/core/host_device.hpp"

namespace moetron {

// Standard deviation of `centered` above: 2 * sqrt(4 * (65536^2 - 1) / 12).
constexpr double kCenteredStd = 75674.45447441297;

MOETRON_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z;
}

// The per-tensor parameters of the generator: all a device kernel needs for one tensor.
struct RandomFill {
  uint64_t key = 0;
  float multiplier = 0.0f;
  float offset = 0.0f;
};

// Element `index` (row-major) of the tensor `fill` describes, as float32.
MOETRON_HOST_DEVICE inline float random_fill_value(const RandomFill& fill, uint64_t index) {
  uint64_t bits = mix64(fill.key + (index + 1) * 0xD1B54A32D192ED03ull);
  int32_t sum = static_cast<int32_t>((bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) + ((bits >> 32) & 0xFFFF) + (bits >> 48));
  float centered = static_cast<float>(2 * sum - 4 * 65535);
#if defined(__CUDA_ARCH__)
  return __fadd_rn(fill.offset, __fmul_rn(centered, fill.multiplier));  // no FMA contraction
#else
  // Each step in double, then rounded once to float: the product of two floats is exact in
  // double and a double sum of two floats rounds to the correctly rounded float sum, so this
  // equals the two rounded float operations above whatever contraction flags the host uses.
  float product = static_cast<float>(static_cast<double>(centered) * static_cast<double>(fill.multiplier));
  return static_cast<float>(static_cast<double>(fill.offset) + static_cast<double>(product));
#endif
}

// Writes elements [first, first + count) of the tensor in `dtype` (BF16, F16 or F32) to `dst`.
void fill_random(const RandomFill& fill, DType dtype, int64_t first, int64_t count, void* dst);

// `rows` rows of `cols` elements into dst (dense, in `dtype`): row r holds elements
// [first + r * row_stride, + cols). Billions of values in real shapes: rows go to every core.
void fill_random_rows(const RandomFill& fill, DType dtype, int64_t first, int64_t row_stride, int64_t rows,
                      int64_t cols, void* dst);

}  // namespace moetron
