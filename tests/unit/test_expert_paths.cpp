// The split of a layer's experts over the per-expert GEMM path's streams (split_experts_by_rows),
// the GEMM rule and the Hopper grouped GEMM's index arithmetic (hopper_gemm_layout.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/backend/hopper_gemm_layout.hpp"

namespace moetron {
namespace {

std::vector<int32_t> offsets_of(const std::vector<int32_t>& rows) {
  std::vector<int32_t> offsets{0};
  for (int32_t r : rows) offsets.push_back(offsets.back() + r);
  return offsets;
}

// Blocks are contiguous, cover every expert once, number at most `streams`, are never empty of
// experts, and none holds more than the mean plus the largest expert's rows.
void expect_valid_split(const std::vector<int32_t>& rows, int streams) {
  const std::vector<int32_t> offsets = offsets_of(rows);
  const std::vector<int64_t> edges = split_experts_by_rows(offsets, streams);
  const int64_t experts = static_cast<int64_t>(rows.size());
  ASSERT_GE(edges.size(), 2u);
  EXPECT_EQ(edges.front(), 0);
  EXPECT_EQ(edges.back(), experts);
  EXPECT_LE(static_cast<int>(edges.size()) - 1, streams);
  const double mean = static_cast<double>(offsets.back()) / streams;
  const int32_t largest = *std::max_element(rows.begin(), rows.end());
  for (size_t b = 0; b + 1 < edges.size(); ++b) {
    EXPECT_LT(edges[b], edges[b + 1]) << "block " << b;
    const int32_t block_rows = offsets[static_cast<size_t>(edges[b + 1])] - offsets[static_cast<size_t>(edges[b])];
    EXPECT_LE(block_rows, mean + largest) << "block " << b << " of " << streams;
  }
}

TEST(ExpertPaths, SplitsExpertsIntoContiguousBlocksOfAboutEqualRows) {
  // 60 experts of 400-600 rows over 4 streams: four blocks, each within one expert of the mean.
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> load(400, 600);
  std::vector<int32_t> rows(60);
  for (auto& r : rows) r = load(rng);
  const std::vector<int64_t> edges = split_experts_by_rows(offsets_of(rows), 4);
  EXPECT_EQ(edges.size(), 5u);
  expect_valid_split(rows, 4);
  for (int streams : {1, 2, 3, 7, 16}) expect_valid_split(rows, streams);
  EXPECT_EQ(split_experts_by_rows(offsets_of(rows), 1), (std::vector<int64_t>{0, 60}));
}

TEST(ExpertPaths, SplitsSkewedAndSparseLoads) {
  // One hot expert holding most rows, idle experts (0 rows) at both ends and in the middle,
  // fewer experts than streams, and one expert.
  expect_valid_split({0, 0, 5000, 3, 0, 7, 0, 0}, 4);
  expect_valid_split({1, 1, 1}, 8);
  EXPECT_EQ(split_experts_by_rows(offsets_of({9}), 4), (std::vector<int64_t>{0, 1}));
  expect_valid_split({0, 0, 0, 0, 0, 0, 0, 300}, 4);
  expect_valid_split({300, 0, 0, 0, 0, 0, 0, 0}, 4);
  // An expert-parallel slice's offsets need not start at 0.
  const std::vector<int64_t> edges = split_experts_by_rows({100, 200, 300, 400, 500}, 2);
  EXPECT_EQ(edges, (std::vector<int64_t>{0, 2, 4}));
  // No experts: the empty split.
  EXPECT_EQ(split_experts_by_rows({0}, 4), (std::vector<int64_t>{0}));
}

// The streams follow the experts' size on a 132-SM GPU (H200): many where one expert's GEMM is
// a few tiles, one where it fills the GPU alone, never more than the cap nor fewer than one.
TEST(ExpertPaths, StreamsFollowTheExpertsSize) {
  constexpr int kSms = 132;
  EXPECT_EQ(expert_gemm_streams_for(256, 2 * 1024, kSms, 8), 8);    // OLMoE, 2,048 tokens a step
  EXPECT_EQ(expert_gemm_streams_for(512, 2 * 1024, kSms, 8), 8);    // 4,096: 64 tiles, 528 wanted
  EXPECT_EQ(expert_gemm_streams_for(2048, 2 * 1024, kSms, 8), 3);   // 16,384: 256 tiles
  EXPECT_EQ(expert_gemm_streams_for(2048, 2 * 14336, kSms, 8), 1);  // Mixtral, 8,192 tokens
  EXPECT_EQ(expert_gemm_streams_for(1092, 2 * 1408, kSms, 8), 3);   // Qwen1.5, 16,380 (22-column tiles)
  EXPECT_EQ(expert_gemm_streams_for(512, 2 * 1024, kSms, 4), 4);    // the cap
  EXPECT_EQ(expert_gemm_streams_for(512, 2 * 1024, kSms, 0), 1);    // a cap below one: one stream
  EXPECT_EQ(expert_gemm_streams_for(0, 2 * 1024, kSms, 8), 8);      // no rows: as for one row
  // Never fewer streams for smaller experts (same width), never more for wider ones.
  for (double rows = 1; rows < 5000; rows *= 1.7) {
    EXPECT_GE(expert_gemm_streams_for(rows, 2048, kSms, 16), expert_gemm_streams_for(rows * 2, 2048, kSms, 16));
    EXPECT_GE(expert_gemm_streams_for(rows, 2048, kSms, 16), expert_gemm_streams_for(rows, 4096, kSms, 16));
  }
}

}  // namespace
}  // namespace moetron

namespace moetron {
namespace {

// Today's rule (ExpertGemmRule::kHostCost): the per-expert GEMMs from 128 rows an expert for
// experts whose two GEMMs reach kExpertGemmMinFlops (Mixtral's), from 256 for experts of
// kExpertGemmHostBoundFlops (OLMoE's 3.2 and Qwen1.5's 4.4 GFLOP there) or calls of few local
// experts (any Mixtral slice), not for 60-64 narrow slices of tp plans (OLMoE tp=16 up to 3,814 rows,
// OLMoE tp=2 until 512, Qwen1.5 tp=2 until 347); never while a graph is recorded, nor for GEMV-sized calls.
// Rows are counted over the local experts, at awkward counts. Then the rules of older formats.
TEST(ExpertPaths, PerExpertGemmsWhereTheyBeatTheTiles) {
  struct Shape {
    const char* name;
    int64_t hidden, cols, experts, k;
  };
  const Shape mixtral{"mixtral", 4096, 14336, 8, 2}, mixtral_tp8{"mixtral tp=8", 4096, 1792, 8, 2},
      mixtral_tp16{"mixtral tp=16", 4096, 896, 8, 2}, mixtral_tp32{"mixtral tp=32", 4096, 448, 8, 2},
      olmoe{"olmoe", 2048, 1024, 64, 8}, olmoe_tp16{"olmoe tp=16", 2048, 64, 64, 8},
      qwen{"qwen1.5", 2048, 1408, 60, 4}, qwen_tp2{"qwen1.5 tp=2", 2048, 704, 60, 4};
  const auto by_gemms = [](const Shape& s, int64_t tokens, bool eager = true,
                           ExpertGemmRule rule = ExpertGemmRule::kHostCost) {
    return expert_call_by_gemms(tokens, s.k, s.experts, s.hidden, s.cols, eager, rule);
  };
  const auto tokens_at = [](const Shape& s, int64_t rows) { return (rows * s.experts + s.k - 1) / s.k; };
  for (const Shape& s : {mixtral, mixtral_tp8}) {
    EXPECT_TRUE(by_gemms(s, 512)) << s.name;   // 128 rows an expert
    EXPECT_TRUE(by_gemms(s, 777)) << s.name;   // 194
    EXPECT_FALSE(by_gemms(s, 511)) << s.name;  // 127
    EXPECT_FALSE(by_gemms(s, 256)) << s.name;  // 64: decode batch 256's wide tiles
    EXPECT_FALSE(by_gemms(s, 512, false)) << s.name;
  }
  // 896 and 448 columns: under the bound at 128 rows; from 256 rows as few experts.
  for (const Shape& s : {mixtral_tp16, mixtral_tp32}) {
    EXPECT_FALSE(by_gemms(s, 600)) << s.name;
    EXPECT_TRUE(by_gemms(s, 1024)) << s.name;
  }
  EXPECT_FALSE(by_gemms(olmoe, tokens_at(olmoe, 255)));
  EXPECT_TRUE(by_gemms(olmoe, tokens_at(olmoe, 256)));   // 3.2 GFLOP an expert
  const Shape olmoe_tp2{"olmoe tp=2", 2048, 512, 64, 8};
  EXPECT_FALSE(by_gemms(olmoe_tp2, tokens_at(olmoe_tp2, 256)));  // 1.6 GFLOP: the tiles
  EXPECT_FALSE(by_gemms(olmoe_tp2, tokens_at(olmoe_tp2, 476)));
  EXPECT_TRUE(by_gemms(olmoe_tp2, tokens_at(olmoe_tp2, 477)));   // 3.0 GFLOP
  for (int64_t rows : {256, 512, 1024, 2048}) EXPECT_FALSE(by_gemms(olmoe_tp16, tokens_at(olmoe_tp16, rows))) << rows;
  EXPECT_FALSE(by_gemms(qwen, tokens_at(qwen, 128)));
  EXPECT_FALSE(by_gemms(qwen, tokens_at(qwen, 256) - 1));
  EXPECT_TRUE(by_gemms(qwen, tokens_at(qwen, 256)));     // 4.4 GFLOP
  EXPECT_FALSE(by_gemms(qwen, tokens_at(qwen, 256), false));
  EXPECT_FALSE(by_gemms(qwen_tp2, tokens_at(qwen_tp2, 256)));  // 2.2 GFLOP
  EXPECT_FALSE(by_gemms(qwen_tp2, tokens_at(qwen_tp2, 346)));
  EXPECT_TRUE(by_gemms(qwen_tp2, tokens_at(qwen_tp2, 347)));   // 3.0 GFLOP
  EXPECT_FALSE(expert_call_by_gemms(kExpertGemvMaxTokens, 8, 1, 8192, 65536, true));  // the GEMVs' calls
  EXPECT_FALSE(expert_call_by_gemms(4096, 2, 0, 4096, 14336, true));                 // no local experts
  // The rules older profiles were measured under. Format 4: from 256 rows for any size, from 128
  // for experts of kExpertGemmMinFlops. Formats 1-3: from 256 rows for any size.
  const ExpertGemmRule four = ExpertGemmRule::kLargeFrom128Rows, three = ExpertGemmRule::kFrom256Rows;
  EXPECT_TRUE(by_gemms(olmoe_tp2, tokens_at(olmoe_tp2, 256), true, four));
  EXPECT_TRUE(by_gemms(olmoe_tp16, tokens_at(olmoe_tp16, 256), true, four));
  EXPECT_FALSE(by_gemms(olmoe_tp16, tokens_at(olmoe_tp16, 255), true, four));
  EXPECT_TRUE(by_gemms(mixtral, 512, true, four));
  EXPECT_FALSE(by_gemms(mixtral, 512, true, three));  // Mixtral's 128 rows
  EXPECT_TRUE(by_gemms(mixtral, 1024, true, three));
  EXPECT_FALSE(by_gemms(olmoe, tokens_at(olmoe, 256), false, three));
  EXPECT_FALSE(expert_call_by_gemms(kExpertGemvMaxTokens, 8, 1, 8192, 65536, true, three));
  EXPECT_FALSE(expert_call_by_gemms(4096, 2, 0, 4096, 14336, true, three));
}

// Under MOETRON_EXPERT_GEMM=wgmma the Hopper GEMMs take every call the GEMMs would and decode
// calls from 25 rows an expert on average (where the 32-row tensor-core GEMVs stop).
TEST(ExpertPaths, HopperGemmsFrom25RowsAnExpert) {
  EXPECT_TRUE(expert_call_by_hopper_gemms(256, 2, 8));   // Mixtral, 64 rows
  EXPECT_TRUE(expert_call_by_hopper_gemms(100, 2, 8));   // 25 rows
  EXPECT_FALSE(expert_call_by_hopper_gemms(96, 2, 8));   // 24 rows: the GEMVs
  EXPECT_TRUE(expert_call_by_hopper_gemms(256, 8, 64));   // OLMoE, 32 rows
  EXPECT_FALSE(expert_call_by_hopper_gemms(64, 8, 64));   // 8 rows
  EXPECT_TRUE(expert_call_by_hopper_gemms(4096, 4, 60));  // Qwen1.5 prefill
  EXPECT_FALSE(expert_call_by_hopper_gemms(kExpertGemvMaxTokens, 8, 1));  // GEMV-sized
  EXPECT_FALSE(expert_call_by_hopper_gemms(4096, 2, 0));                  // no local experts
}

// The default on Hopper (wgmma+cublas) hands the cuBLAS GEMMs only the eager calls of experts of
// at least 10 GFLOP from 128 rows an expert: Mixtral's prefill, OLMoE's 1,024-row calls; the
// grouped wgmma kernel keeps OLMoE, Qwen1.5 and Qwen3 at 4,096 tokens, and every captured call.
TEST(ExpertPaths, HopperDefaultLeavesTheLargestExpertsToCublas) {
  EXPECT_TRUE(expert_call_by_hopper_cublas(2048, 2, 8, 4096, 14336, true));    // Mixtral, 512 rows
  EXPECT_TRUE(expert_call_by_hopper_cublas(512, 2, 8, 4096, 14336, true));     // 128 rows: 45 GFLOP
  EXPECT_FALSE(expert_call_by_hopper_cublas(512, 2, 8, 4096, 14336, false));   // captured
  EXPECT_FALSE(expert_call_by_hopper_cublas(256, 2, 8, 4096, 14336, true));    // 64 rows: decode
  EXPECT_TRUE(expert_call_by_hopper_cublas(8192, 8, 64, 2048, 1024, true));    // OLMoE, 12.9 GFLOP
  EXPECT_FALSE(expert_call_by_hopper_cublas(4096, 8, 64, 2048, 1024, true));   // 6.4 GFLOP
  EXPECT_FALSE(expert_call_by_hopper_cublas(8192, 4, 60, 2048, 1408, true));   // Qwen1.5, 9.4 GFLOP
  EXPECT_FALSE(expert_call_by_hopper_cublas(8192, 8, 128, 2048, 768, true));   // Qwen3, 4.8 GFLOP
  // 10 GFLOP at fewer than 128 rows stays on wgmma (one tile an expert streams its weights once).
  EXPECT_FALSE(expert_call_by_hopper_cublas(127 * 8, 1, 8, 8192, 65536, true));
  EXPECT_FALSE(expert_call_by_hopper_cublas(4096, 2, 0, 4096, 14336, true));   // no local experts
}

// The Hopper epilogue's map from a consumer warpgroup's accumulators to its 64-row tile: every
// element of 64 x 128 (the down projection's N) exactly once, 64 registers a thread; and for
// SwiGLU each gate column c (c < 64) and its up column c + 64 in the same thread and row, 8
// i-steps apart.
TEST(ExpertPaths, HopperAccumulatorsCoverTheTileOnce) {
  std::vector<int> seen(64 * 128, 0);
  for (int t = 0; t < 128; ++t)
    for (int i = 0; i < 16; ++i)
      for (int half = 0; half < 2; ++half)
        for (int j = 0; j < 2; ++j) {
          const HopperAccumulatorAt at = hopper_accumulator_at(t, i, half, j);
          ASSERT_TRUE(at.row >= 0 && at.row < 64 && at.col >= 0 && at.col < 128) << t << " " << i;
          ++seen[static_cast<size_t>(at.row * 128 + at.col)];
          if (i < 8) {
            const HopperAccumulatorAt up = hopper_accumulator_at(t, i + 8, half, j);
            EXPECT_EQ(up.row, at.row);
            EXPECT_EQ(up.col, at.col + 64);
          }
        }
  for (size_t e = 0; e < seen.size(); ++e) EXPECT_EQ(seen[e], 1) << "element " << e;
  // Spot checks against the PTX ISA's figure: thread 0 holds (0, 0), (0, 1), (8, 0), (8, 1) first;
  // thread 37 (warp 1, lane 5) starts at row 17, column 2.
  EXPECT_EQ(hopper_accumulator_at(0, 0, 1, 0).row, 8);
  EXPECT_EQ(hopper_accumulator_at(37, 0, 0, 0).row, 17);
  EXPECT_EQ(hopper_accumulator_at(37, 0, 0, 0).col, 2);
}

// The descriptor's fields where the PTX ISA puts them, for a stage's start and a k step into it.
TEST(ExpertPaths, HopperDescriptorFields) {
  for (const uint32_t address : {0x0u, 0x400u, 0x420u, 0x2460u, 0x3FFE0u}) {
    const uint64_t d = hopper_smem_descriptor(address);
    EXPECT_EQ(d & 0x3FFF, address >> 4) << address;         // start address >> 4
    EXPECT_EQ((d >> 16) & 0x3FFF, 1u) << address;            // leading-dimension offset: 16 bytes
    EXPECT_EQ((d >> 32) & 0x3FFF, 1024u >> 4) << address;    // stride-dimension offset: 1,024 bytes
    EXPECT_EQ((d >> 49) & 0x7, 0u) << address;               // base offset
    EXPECT_EQ(d >> 62, 1u) << address;                       // 128-byte swizzle
    EXPECT_EQ(d & ((uint64_t{0x3} << 14) | (uint64_t{0x3} << 30) | (uint64_t{0x7} << 46) | (uint64_t{0x3FF} << 52)), 0u)
        << address;                                         // reserved bits stay clear
  }
  // A k step of 16 bf16 moves the start by 32 bytes: 2 in the field.
  EXPECT_EQ(hopper_smem_descriptor(0x1000 + 32) - hopper_smem_descriptor(0x1000), 2u);
}

// The Hopper grouped GEMM's block order: every (row tile, column block) pair exactly once, and
// groups of kHopperColumnGroup column blocks (the last one narrower) taken for every row tile
// before the next group starts. Column counts of the shapes in use: OLMoE's 1,024 intermediate
// (16 SwiGLU blocks of 64), Qwen1.5's 1,408 (22), a tp slice of 352 (6, one partial group),
// Mixtral's 14,336 (224) and hidden 4,096 (32 down blocks of 128); one column block, one tile.
TEST(ExpertPaths, HopperBlockOrderCoversEveryTileAndColumnOnce) {
  for (const int tiles : {1, 3, 8, 37, 192}) {
    for (const int columns : {1, 5, 6, 8, 9, 16, 22, 32, 224}) {
      std::vector<int> seen(static_cast<size_t>(tiles * columns), 0);
      int group_start = 0;
      for (int block = 0; block < tiles * columns; ++block) {
        const HopperBlockWork w = hopper_block_work(block, tiles, columns);
        ASSERT_TRUE(w.tile >= 0 && w.tile < tiles && w.column_block >= 0 && w.column_block < columns)
            << "block " << block << " of " << tiles << " x " << columns;
        ++seen[static_cast<size_t>(w.tile * columns + w.column_block)];
        // Within a group's blocks, the column blocks stay inside the group.
        if (block % (kHopperColumnGroup * tiles) == 0) group_start = w.column_block;
        EXPECT_GE(w.column_block, group_start);
        EXPECT_LT(w.column_block, group_start + kHopperColumnGroup);
      }
      for (size_t i = 0; i < seen.size(); ++i)
        EXPECT_EQ(seen[i], 1) << "pair " << i << " of " << tiles << " x " << columns;
    }
  }
  // Blocks 0-7 are the first row tile's first eight column blocks, block 8 the second tile's first.
  EXPECT_EQ(hopper_block_work(7, 4, 22).column_block, 7);
  EXPECT_EQ(hopper_block_work(8, 4, 22).tile, 1);
  EXPECT_EQ(hopper_block_work(8, 4, 22).column_block, 0);
  // The last group of 22 columns holds 6: block 2 x 8 x 4 + 7 is tile 1, column 17.
  EXPECT_EQ(hopper_block_work(2 * 8 * 4 + 7, 4, 22).tile, 1);
  EXPECT_EQ(hopper_block_work(2 * 8 * 4 + 7, 4, 22).column_block, 17);
}

}  // namespace
}  // namespace moetron
