// Element types and host-side conversions between bf16/f16 and float.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace moetron {

enum class DType : uint8_t { F32, F16, BF16, I32, I64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: F32, F16, BF16, I32, I64
// Parses the safetensors dtype string; throws Error naming `where` for an unsupported one.
DType parse_dtype(const std::string& name, const std::string& where);
// The floating-point dtypes weights may come in (F32, F16, BF16).
inline bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

inline float bf16_to_float(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}
float f16_to_float(uint16_t v);
uint16_t float_to_f16(float f);

// Reads element i of a buffer of type t as float (F32, F16, BF16 only).
inline float load_as_float(const void* data, DType t, size_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(data)[i];
    case DType::BF16: return bf16_to_float(static_cast<const uint16_t*>(data)[i]);
    case DType::F16: return f16_to_float(static_cast<const uint16_t*>(data)[i]);
    default: return 0.0f;
  }
}
// Converts n elements of type `from` into floats.
void convert_to_float(const void* src, DType from, float* dst, size_t n);
// Stores n floats as type `to` (F32, F16, BF16 only; rounding to nearest even).
void convert_from_float(const float* src, DType to, void* dst, size_t n);

}  // namespace moetron
