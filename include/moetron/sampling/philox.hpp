// Philox4x32-10 (Salmon et al., SC'11) and the uniform float sampling draws from it, in one
// definition that the host (sampling.cpp) and the CUDA sampler (kernels/sampling.cu) both
// compile, so the two draw the same u bit for bit. sampling.hpp documents the packing.
#pragma once
#include <cstdint>

#include "moetron/core/host_device.hpp"

namespace moetron {
namespace philox {

struct Words4 {
  uint32_t w[4];
};

// One block with 10 rounds.
MOETRON_HOST_DEVICE inline Words4 philox4x32_10(Words4 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;    // round multipliers
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // key schedule increments
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += kWeyl0;
      key1 += kWeyl1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * ctr.w[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * ctr.w[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = Words4{{hi1 ^ ctr.w[1] ^ key0, lo1, hi0 ^ ctr.w[3] ^ key1, lo0}};
  }
  return ctr;
}

// u in [0, 1) with 24 random bits: key = seed, counter = {counter, 0, 0}.
MOETRON_HOST_DEVICE inline float uniform(uint64_t seed, uint64_t counter) {
  const Words4 bits = philox4x32_10(
      Words4{{static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u}},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(bits.w[0] >> 8) * 0x1p-24f;
}

}  // namespace philox
}  // namespace moetron
