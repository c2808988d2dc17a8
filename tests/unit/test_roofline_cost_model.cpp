// RooflineCostModel: its formulas, presets and the parsing of --interconnect and --hardware-set.
#include <gtest/gtest.h>

#include "error_of.hpp"
#include "moetron/predict/roofline_cost_model.hpp"

namespace moetron {
namespace {

HardwareFigures unit_figures() {
  HardwareFigures f;
  f.name = "unit";
  f.gemm_flops = 1e9;
  f.hbm_bytes_per_s = 1e9;
  f.launch_s = 2e-6;
  f.graph_node_s = 1e-6;
  f.intra = {100e9, 1e-6};
  f.inter = {10e9, 5e-6};
  return f;
}

TEST(RooflineCostModel, KernelsTakeTheSlowerOfFlopsAndBytes) {
  const RooflineCostModel m(unit_figures());
  // 64^3 GEMM: 2*64^3 = 524288 FLOPs against 3*64*64*2 = 24576 bytes: compute-bound.
  EXPECT_DOUBLE_EQ(m.gemm_s(64, 64, 64), 524288e-9);
  // One row: 2*1*64*64 = 8192 FLOPs against 2*(64 + 4096 + 64) = 8448 bytes: bound by bytes.
  EXPECT_DOUBLE_EQ(m.gemm_s(1, 64, 64), 8448e-9);
  // 4 experts' weights [64 x 32] read once, one row each in and out: bound by bytes.
  EXPECT_DOUBLE_EQ(m.grouped_gemm_s(1, 4, 32, 64, 4), 2 * (4 * 64 * 32 + 4 * (64 + 32)) * 1e-9);
  // 64 rows each: 2*256*32*64 FLOPs, more than the bytes.
  EXPECT_DOUBLE_EQ(m.grouped_gemm_s(64, 4, 32, 64, 256), 2.0 * 256 * 32 * 64 * 1e-9);
  EXPECT_DOUBLE_EQ(m.memory_bound_s(1000), 1e-6);
  EXPECT_DOUBLE_EQ(m.kernel_overhead_s(true), 1e-6);
  EXPECT_DOUBLE_EQ(m.kernel_overhead_s(false), 2e-6);
}

TEST(RooflineCostModel, PrefillAttentionIsCausalAndReadsEachKvRowOnce) {
  const RooflineCostModel m(unit_figures());
  // 8 queries of one 8-token prompt, 2 q heads over 1 kv head of 4: 4*8*4.5*8 = 1152 FLOPs.
  EXPECT_DOUBLE_EQ(m.attention_s(8, 8, 2, 1, 4, true), 1152e-9);
  // Decode: one row reading 64 cached K and V rows of 4, and its q and o: 2*(2*64*4 + 2*4) bytes.
  EXPECT_DOUBLE_EQ(m.attention_s(1, 64, 1, 1, 4, false), 1040e-9);
}

TEST(RooflineCostModel, CollectivesFollowNcclTestsBusBandwidth) {
  const RooflineCostModel m(unit_figures());
  EXPECT_EQ(m.allreduce_s(1 << 20, 1, LinkScope::IntraNode), 0);
  EXPECT_EQ(m.alltoall_s(1 << 20, 1, LinkScope::InterNode), 0);
  EXPECT_EQ(m.broadcast_s(1 << 20, 1, LinkScope::InterNode), 0);
  // 8 ranks: 3 hops; 2 * 7/8 of the bytes over the bus.
  EXPECT_DOUBLE_EQ(m.allreduce_s(800, 8, LinkScope::IntraNode), 3e-6 + 1400 / 100e9);
  EXPECT_DOUBLE_EQ(m.alltoall_s(800, 8, LinkScope::InterNode), 5e-6 + 700 / 10e9);
  EXPECT_DOUBLE_EQ(m.send_recv_s(1000, LinkScope::InterNode), 5e-6 + 1000 / 10e9);
  EXPECT_DOUBLE_EQ(m.broadcast_s(1000, 4, LinkScope::IntraNode), 2e-6 + 1000 / 100e9);
  EXPECT_GT(m.allreduce_s(1 << 20, 8, LinkScope::InterNode), m.allreduce_s(1 << 20, 8, LinkScope::IntraNode));
}

TEST(RooflineCostModel, PresetsAreKnownAndUnknownOnesNamed) {
  for (const std::string& name : hardware_preset_names()) {
    const HardwareFigures f = hardware_preset(name);
    EXPECT_EQ(f.name, name);
    EXPECT_GT(f.memory_bytes, 0) << name;
    EXPECT_NO_THROW(RooflineCostModel{f}) << name;
  }
  EXPECT_EQ(hardware_preset("h200").gemm_flops, 751e12);  // perf/RESULTS.md
  const std::string e = test::error_of([] { hardware_preset("tpu"); });
  EXPECT_NE(e.find("--hardware: unknown hardware 'tpu'"), std::string::npos) << e;
  EXPECT_NE(e.find("h200"), std::string::npos) << e;
}

// With a cache rate (the ceiling's figures), up to the cache's size of a kernel's bytes move at
// it and the rest at the memory's; without one every byte at the memory's.
TEST(RooflineCostModel, KernelBytesUpToTheCacheMoveAtItsRate) {
  HardwareFigures f = unit_figures();
  f.cache_bytes = 4000;
  const RooflineCostModel plain(f);
  EXPECT_DOUBLE_EQ(plain.memory_bound_s(10000), 10e-6);
  f.cache_bytes_per_s = 4e9;
  const RooflineCostModel cached(f);
  EXPECT_DOUBLE_EQ(cached.memory_bound_s(2000), 0.5e-6);
  EXPECT_DOUBLE_EQ(cached.memory_bound_s(10000), 1e-6 + 6e-6);
  EXPECT_DOUBLE_EQ(cached.gemm_s(64, 64, 64), 524288e-9);  // FLOPs still bound it
  EXPECT_NE(describe(f).find("(cache)"), std::string::npos) << describe(f);
  EXPECT_EQ(describe(unit_figures()).find("cache"), std::string::npos);
  EXPECT_EQ(hardware_preset("h200").cache_bytes, int64_t{50} << 20);
  EXPECT_EQ(hardware_preset("h200").cache_bytes_per_s, 0);  // the estimate's roofline has none
}

TEST(RooflineCostModel, InterconnectAndOverridesParse) {
  HardwareFigures f = hardware_preset("h100");
  apply_interconnect(f, "intra=400:3,inter=50:8.5");
  EXPECT_DOUBLE_EQ(f.intra.bytes_per_s, 400e9);
  EXPECT_DOUBLE_EQ(f.intra.latency_s, 3e-6);
  EXPECT_DOUBLE_EQ(f.inter.bytes_per_s, 50e9);
  EXPECT_DOUBLE_EQ(f.inter.latency_s, 8.5e-6);
  apply_interconnect(f, "inter=25:0");
  EXPECT_DOUBLE_EQ(f.inter.bytes_per_s, 25e9);
  EXPECT_DOUBLE_EQ(f.intra.bytes_per_s, 400e9);
  apply_hardware_overrides(f, "gemm_tflops=500,hbm_tbps=2,memory_gib=40,graph_node_us=0.5,cache_mib=60");
  EXPECT_EQ(f.cache_bytes, int64_t{60} << 20);
  EXPECT_DOUBLE_EQ(f.gemm_flops, 500e12);
  EXPECT_DOUBLE_EQ(f.hbm_bytes_per_s, 2e12);
  EXPECT_EQ(f.memory_bytes, int64_t{40} << 30);
  EXPECT_DOUBLE_EQ(f.graph_node_s, 0.5e-6);
  EXPECT_EQ(f.name, "h100 + overrides");

  const struct {
    std::string text, fragment;
  } bad_links[] = {{"intra=400", "--interconnect: intra='400' is not GBps:us"},
                   {"intra=0:3", "--interconnect: intra bandwidth '0'"},
                   {"intra=x:3", "--interconnect: intra bandwidth 'x'"},
                   {"inter=50:-1", "--interconnect: inter latency '-1'"},
                   {"nvlink=400:3", "--interconnect: unknown link 'nvlink'"},
                   {"intra=400:3,", "--interconnect"},
                   {"", "--interconnect"}};
  for (const auto& bad : bad_links) {
    const std::string e = test::error_of([&] { apply_interconnect(f, bad.text); });
    EXPECT_NE(e.find(bad.fragment), std::string::npos) << bad.text << ": " << e;
  }
  const std::string e = test::error_of([&] { apply_hardware_overrides(f, "tflops=3"); });
  EXPECT_NE(e.find("--hardware-set: unknown key 'tflops'"), std::string::npos) << e;
  const std::string zero = test::error_of([&] { apply_hardware_overrides(f, "hbm_tbps=0"); });
  EXPECT_NE(zero.find("--hardware-set: hbm_tbps '0'"), std::string::npos) << zero;
}

}  // namespace
}  // namespace moetron
