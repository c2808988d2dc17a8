#include "op_table.hpp"

#include <cstring>

#include "moetron/core/dtype.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace gputest {

namespace {
int64_t count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}
}  // namespace

std::vector<float> random_bf16_values(std::mt19937_64& rng, int64_t n, float scale) {
  // One draw of the case's engine seeds a counter-based stream (splitmix64 of seed + i): the
  // engine advances by one whatever n is, so the CPU and GPU sides of a case draw the same
  // numbers, and a value costs a few nanoseconds (the op tables draw up to ~400M of them a side;
  // uniform_real_distribution took ~28 ns each, most of a GPU test run).
  const uint64_t seed = rng();
  const auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = seed + static_cast<uint64_t>(i + 1) * 0x9e3779b97f4a7c15ull;
    float x = 0.0f;
    do {  // uniform in [-scale, scale) on a 2^-24 grid, rounded to bf16; never zero
      z = mix(z);
      const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
      x = bf16_to_float(float_to_bf16((2.0f * u - 1.0f) * scale));
    } while (x == 0.0f);
    v[static_cast<size_t>(i)] = x;
  }
  return v;
}

std::vector<float> CaseInputs::values(int64_t n, float scale) { return random_bf16_values(rng, n, scale); }

std::vector<int32_t> CaseInputs::ints(int64_t n, int32_t lo, int32_t hi) {
  std::uniform_int_distribution<int32_t> dist(lo, hi);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = dist(rng);
  return v;
}

Tensor CaseInputs::activation(const std::vector<float>& v, std::vector<int64_t> shape) {
  MOETRON_ASSERT(static_cast<int64_t>(v.size()) == count(shape));
  Tensor t = ops.alloc(ops.activation_dtype(), std::move(shape));
  if (t.dtype == DType::F32) {
    ops.copy_from_host(t, v.data());
  } else {
    MOETRON_ASSERT(t.dtype == DType::BF16);
    std::vector<uint16_t> bits(v.size());
    for (size_t i = 0; i < v.size(); ++i) bits[i] = float_to_bf16(v[i]);
    ops.copy_from_host(t, bits.data());
  }
  return t;
}

Tensor CaseInputs::activation(std::vector<int64_t> shape, float scale) {
  // Not in one call: the order in which arguments are evaluated is unspecified, and the moved
  // shape could be taken before count(shape) reads it.
  std::vector<float> v = values(count(shape), scale);
  return activation(v, std::move(shape));
}

Tensor CaseInputs::weight(const std::vector<float>& v, std::vector<int64_t> shape) {
  Tensor host = host_tensor(DType::F32, std::move(shape));
  MOETRON_ASSERT(static_cast<int64_t>(v.size()) == host.numel());
  if (!v.empty()) std::memcpy(host.data, v.data(), host.nbytes());
  return ops.upload_weight(host);
}

Tensor CaseInputs::weight(std::vector<int64_t> shape, float scale) {
  // Not in one call: the order in which arguments are evaluated is unspecified, and the moved
  // shape could be taken before count(shape) reads it.
  std::vector<float> v = values(count(shape), scale);
  return weight(v, std::move(shape));
}

Tensor CaseInputs::i32(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
  Tensor t = ops.alloc(DType::I32, std::move(shape));
  MOETRON_ASSERT(static_cast<int64_t>(v.size()) == t.numel());
  ops.copy_from_host(t, v.data());
  return t;
}

Tensor CaseInputs::i64(const std::vector<int64_t>& v, std::vector<int64_t> shape) {
  Tensor t = ops.alloc(DType::I64, std::move(shape));
  MOETRON_ASSERT(static_cast<int64_t>(v.size()) == t.numel());
  ops.copy_from_host(t, v.data());
  return t;
}

Tensor CaseInputs::f32(const std::vector<float>& v, std::vector<int64_t> shape) {
  Tensor t = ops.alloc(DType::F32, std::move(shape));
  MOETRON_ASSERT(static_cast<int64_t>(v.size()) == t.numel());
  ops.copy_from_host(t, v.data());
  return t;
}

Tensor CaseInputs::output(DType dtype, std::vector<int64_t> shape) {
  Tensor t = ops.alloc(dtype, std::move(shape));
  std::vector<unsigned char> bytes(t.nbytes(), 0xff);
  ops.copy_from_host(t, bytes.data());
  return t;
}

Tensor CaseInputs::output_activation(std::vector<int64_t> shape) {
  return output(ops.activation_dtype(), std::move(shape));
}

std::vector<float> read_as_float(Ops& ops, const Tensor& t) {
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.dtype) {
    case DType::F32:
      ops.to_host(t, out.data());
      break;
    case DType::BF16: {
      std::vector<uint16_t> bits(n);
      ops.to_host(t, bits.data());
      for (size_t i = 0; i < n; ++i) out[i] = bf16_to_float(bits[i]);
      break;
    }
    case DType::I32: {
      std::vector<int32_t> v(n);
      ops.to_host(t, v.data());
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(v[i]);
      break;
    }
    case DType::I64: {
      std::vector<int64_t> v(n);
      ops.to_host(t, v.data());
      for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(v[i]);
      break;
    }
    default:
      MOETRON_FAIL("read_as_float: cannot read " << t.describe());
  }
  return out;
}

}  // namespace gputest
}  // namespace moetron
