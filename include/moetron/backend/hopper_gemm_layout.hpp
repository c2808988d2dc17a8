// The index arithmetic of the Hopper grouped expert GEMM (kernels/grouped_gemm_sm90.cu), in a
// header of its own so that the CPU tests check it: the order its blocks walk (row tile, column
// block) pairs, where a consumer's accumulators land in its tile, and the shared-memory operand
// descriptors wgmma reads.
//
// Block order. Blocks start in order of their index, so the order decides what the blocks resident at once
// share through L2: kHopperColumnGroup column blocks of every row tile in turn, then the next
// group. Row tiles of one expert are adjacent in the routing's tile table, so a group's weight
// rows are read from HBM about once for all of that expert's tiles, and a row tile's inputs once a
// group. (Row tile by row tile over all columns would stream an expert's weights again for each of
// its row tiles; column block by column block, every input row again for each column block.)
#pragma once
#include <cstdint>

#include "moetron/core/host_device.hpp"

namespace moetron {

constexpr int kHopperColumnGroup = 8;

struct HopperBlockWork {
  int tile, column_block;
};

// Where a consumer warpgroup's accumulator lands in its 64-row output tile (PTX ISA, the D
// fragment of wgmma .m64nNk16 with fp32 sums): thread t (0-127) holds d[4i + 2 half + j] at row
// 16 (t / 32) + (t % 32) / 4 + 8 half and column 8i + 2 (t % 4) + j, for i < N / 8, half and j
// in {0, 1}. The kernel's epilogue stores through it; the CPU tests check it covers the tile once.
struct HopperAccumulatorAt {
  int row, col;
};
MOETRON_HOST_DEVICE inline HopperAccumulatorAt hopper_accumulator_at(int thread, int i, int half, int j) {
  return {16 * (thread / 32) + (thread % 32) / 4 + 8 * half, 8 * i + 2 * (thread % 4) + j};
}

// wgmma's shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format") for a K-major
// operand stored as TMA writes it with the 128-byte swizzle: start address >> 4 in bits 0-13, the
// leading-dimension byte offset >> 4 in bits 16-29 (unused by this layout; 1 by convention), the
// stride-dimension byte offset >> 4 in bits 32-45 (1,024 bytes: one 8-row atom of 128-byte rows),
// base offset 0 in bits 49-51 (every stage starts on a 1,024-byte boundary and a k step moves the
// start by 32 bytes inside the first 128), swizzle mode 1 (128 bytes) in bits 62-63.
constexpr uint64_t kHopperSwizzle128 = 1;
MOETRON_HOST_DEVICE inline uint64_t hopper_smem_descriptor(uint32_t shared_address) {
  return ((static_cast<uint64_t>(shared_address) & 0x3FFFF) >> 4) | (uint64_t{16 >> 4} << 16) |
         (uint64_t{1024 >> 4} << 32) | (kHopperSwizzle128 << 62);
}

// Block `block` of max_tiles x column_blocks: every pair exactly once.
MOETRON_HOST_DEVICE inline HopperBlockWork hopper_block_work(int block, int max_tiles, int column_blocks) {
  const int group = block / (kHopperColumnGroup * max_tiles);
  const int in_group = block - group * kHopperColumnGroup * max_tiles;
  const int left = column_blocks - group * kHopperColumnGroup;  // the last group may be narrower
  const int width = left < kHopperColumnGroup ? left : kHopperColumnGroup;
  return {in_group / width, group * kHopperColumnGroup + in_group % width};
}

}  // namespace moetron
