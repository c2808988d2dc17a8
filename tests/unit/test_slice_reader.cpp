// The loader's read-ahead (SliceReader, CheckpointSource::expect): slices read on the reader
// thread with pread are byte for byte those the memory-mapped path copies, whatever the shard
// layout, sizes and order; a file truncated after it was opened, or a read out of the announced
// order, ends in an Error naming the file and tensor, never a hang; and load_weights through it
// gives the weights the random source generates for the same seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "model_test_helpers.hpp"
#include "moetron/backend/cpu_ops.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/model/slice_reader.hpp"
#include "moetron/model/checkpoint_source.hpp"

namespace moetron {
namespace {

using testing::TempDir;
using testing::throws_error;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (uint8_t& b : v) b = static_cast<uint8_t>(rng() & 0x7f);  // high bit clear: never a bf16/f32 NaN
  return v;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  if (!t.defined()) return {};  // a weight the family lacks
  const auto* p = static_cast<const uint8_t*>(t.data);
  return std::vector<uint8_t>(p, p + t.nbytes());
}

// Tensors "t.<i>" of awkward shapes in sharded files: names sort 0, 1, 10, 11, 2, ... as hub
// shards do, and the writer's order is shuffled too, so numeric order jumps between files.
struct ShardedFixture {
  TempDir dir{"slice-reader"};
  struct Made {
    TensorSpec spec;
    DType dtype;
    std::vector<uint8_t> bytes;
  };
  std::vector<Made> tensors;  // in numeric (loader) order

  ShardedFixture() {
    const std::vector<std::vector<int64_t>> shapes = {
        {37, 101}, {13}, {5, 3, 7}, {1, 1}, {64, 33}, {3, 40001}, {101, 37}, {7}, {0, 5}, {29, 129}, {2, 70001}, {11, 3}};
    for (size_t i = 0; i < shapes.size(); ++i) {
      const DType dtype = i == 4 ? DType::F32 : DType::BF16;  // one stray F32 (converted on read)
      int64_t n = 1;
      for (int64_t d : shapes[i]) n *= d;
      tensors.push_back({{"t." + std::to_string(i), shapes[i], WeightKind::Linear},
                         dtype,
                         random_bytes(static_cast<size_t>(n) * dtype_size(dtype), static_cast<uint32_t>(i + 1))});
    }
    std::vector<TensorSource> sources;
    static const uint8_t kNoBytes = 0;  // the writer wants a pointer for an empty tensor too
    for (const Made& t : tensors)
      sources.push_back({t.spec.name, t.dtype, t.spec.shape, t.bytes.empty() ? &kNoBytes : t.bytes.data(), {}});
    std::shuffle(sources.begin(), sources.end(), std::mt19937(7));
    write_sharded_safetensors(dir.str(), sources, 150000);
  }

  // Every slice shape the loader makes: whole tensors, row ranges, narrow and wide column
  // ranges (gathered from a covering span, or one pread a row), empty ones, 1-D element ranges.
  std::vector<SliceRead> reads() const {
    std::vector<SliceRead> out;
    for (const Made& t : tensors) {
      const Matrix2d m = as_matrix(t.spec.shape);
      out.push_back({t.spec, 0, -1, 0, -1});
      if (m.rows > 2) out.push_back({t.spec, 1, m.rows - 2, 0, -1});
      if (m.cols > 2) out.push_back({t.spec, 0, -1, 1, m.cols / 2});
      if (m.cols > 2 && m.rows > 1) out.push_back({t.spec, 1, m.rows - 1, m.cols / 3, m.cols - m.cols / 3 - 1});
      out.push_back({t.spec, 0, m.rows, 0, 0});
    }
    return out;
  }
};

Tensor read(WeightSource& s, const SliceRead& r) { return s.read(r.spec, r.row_begin, r.row_count, r.col_begin, r.col_count); }

TEST(SliceReader, ReadAheadGivesTheMappedPathsBytes) {
  ShardedFixture fx;
  ASSERT_GT(std::distance(std::filesystem::directory_iterator(fx.dir.str()), {}), 3);  // several shards
  const std::vector<SliceRead> reads = fx.reads();
  auto mapped = open_checkpoint_source(fx.dir.str());
  auto ahead = open_checkpoint_source(fx.dir.str());
  ahead->expect(reads, host_tensor);
  size_t compared = 0;
  for (const SliceRead& r : reads) {
    SCOPED_TRACE(r.spec.name + " rows " + std::to_string(r.row_begin) + " cols " + std::to_string(r.col_begin));
    const Tensor a = read(*mapped, r), b = read(*ahead, r);
    ASSERT_EQ(a.dtype, b.dtype);
    ASSERT_EQ(a.shape, b.shape);
    ASSERT_EQ(bytes_of(a), bytes_of(b));
    compared += a.nbytes();
  }
  EXPECT_GT(compared, 1000000u);
  // And both hold the written bytes (bf16 ones unconverted): a wide column slice of t.10.
  const ShardedFixture::Made& wide = fx.tensors[10];
  Tensor t = mapped->read(wide.spec, 1, 1, 5, 65000);
  EXPECT_EQ(0, std::memcmp(t.data, wide.bytes.data() + (70001 + 5) * 2, 65000 * 2));
  // After its last announced read, the source reads unannounced slices again.
  EXPECT_EQ(bytes_of(read(*ahead, reads[3])), bytes_of(read(*mapped, reads[3])));
}

TEST(SliceReader, StridedRunsWithATinyReadAheadBudget) {
  TempDir dir("slice-reader-raw");
  const std::vector<uint8_t> data = random_bytes(3 << 20, 11);
  const std::string path = dir.file("raw.bin");
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_TRUE(f);
    ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
    std::fclose(f);
  }
  // run_bytes, stride, rows, offset: contiguous, narrow runs (covering span), wide runs (a pread
  // each), a single row, an odd offset.
  const std::vector<std::array<uint64_t, 4>> shapes = {
      {1000, 1000, 7, 3}, {6, 26, 4002, 17}, {70000, 90001, 20, 5}, {12344, 99999, 1, 77}, {2, 3, 100000, 1}};
  std::vector<SliceJob> jobs;
  for (const auto& [run, stride, rows, offset] : shapes)  // I32 elements: rows * run bytes, a multiple of 4
    jobs.push_back({path, "raw", offset, stride, run, static_cast<int64_t>(rows), DType::I32,
                    {static_cast<int64_t>(rows * run / 4)}});
  SliceReader reader(jobs, host_tensor, /*ahead_bytes=*/1);
  for (const SliceJob& job : jobs) {
    const Tensor t = reader.next();
    ASSERT_EQ(t.nbytes(), job.bytes());
    for (int64_t r = 0; r < job.rows; ++r)
      ASSERT_EQ(0, std::memcmp(static_cast<const char*>(t.data) + r * job.run_bytes,
                               data.data() + job.offset + r * job.stride, job.run_bytes))
          << "run " << job.run_bytes << " row " << r;
  }
  EXPECT_EQ(reader.remaining(), 0u);
  // Given up early: the destructor stops the thread (a hang would time the test out).
  SliceReader abandoned(jobs, host_tensor, 1);
  abandoned.next();
}

TEST(SliceReader, AFileTruncatedAfterOpeningIsNamedNotABusError) {
  ShardedFixture fx;
  auto source = open_checkpoint_source(fx.dir.str());  // every shard opened and validated
  const std::vector<SliceRead> reads = fx.reads();
  const Checkpoint ckpt = Checkpoint::open(fx.dir.str());
  // t.6's file, cut to its header: the first read of a byte from it fails.
  const std::string victim = ckpt.get("t.6").file;
  uint64_t data_start = UINT64_MAX;
  std::string expected;  // the first tensor read from the file (with a byte in its slice)
  for (SliceRead r : reads) {
    const TensorView v = ckpt.get(r.spec.name);
    if (v.file != victim) continue;
    data_start = std::min<uint64_t>(data_start, v.file_offset);
    slice_shape(r.spec.shape, r.row_begin, r.row_count, r.col_begin, r.col_count);
    if (expected.empty() && r.row_count * r.col_count > 0) expected = r.spec.name;
  }
  std::filesystem::resize_file(victim, data_start);
  source->expect(reads, host_tensor);
  std::string failed_at;
  EXPECT_TRUE(throws_error(
      [&] {
        for (const SliceRead& r : reads) {
          failed_at = r.spec.name;
          read(*source, r);
        }
      },
      {victim, "'" + expected + "'", "truncated"}));
  EXPECT_EQ(failed_at, expected);
  // Cancelled after the error, and the source stays usable for other files.
  source->expect({}, {});
}

TEST(SliceReader, AReadOutOfTheAnnouncedOrderIsAnError) {
  ShardedFixture fx;
  auto source = open_checkpoint_source(fx.dir.str());
  const std::vector<SliceRead> reads = fx.reads();
  source->expect(reads, host_tensor);
  read(*source, reads[0]);
  EXPECT_TRUE(throws_error([&] { read(*source, reads[2]); }, {"breaks the announced order", "expected 't.0' (rows from 1, columns from 0)"}));
}

std::vector<const Tensor*> tensors_of(const ModelWeights& w) {
  std::vector<const Tensor*> out = {&w.embed, &w.final_norm, &w.lm_head};
  for (const LayerWeights& l : w.layers)
    for (const Tensor* t : {&l.input_norm, &l.post_attention_norm, &l.attn.qkv, &l.attn.o, &l.attn.qkv_bias,
                            &l.attn.o_bias, &l.attn.q_norm, &l.attn.k_norm, &l.router, &l.experts.gate_up,
                            &l.experts.down, &l.shared.gate_up, &l.shared.down, &l.shared_gate, &l.dense.gate_up,
                            &l.dense.down})
      out.push_back(t);
  return out;
}

// load_weights announces its reads; through the read-ahead it gets exactly what the random
// source generates, for a sliced shard of a sharded checkpoint of every family.
TEST(SliceReader, LoadWeightsThroughTheReaderMatchesTheRandomSource) {
  for (Family family : {Family::Mixtral, Family::Qwen2Moe, Family::Olmoe, Family::Qwen3Moe}) {
    SCOPED_TRACE(family_name(family));
    TempDir dir("slice-reader-load");
    const RandomCheckpointResult made =
        write_random_checkpoint(hf_preset_json(family, "tiny"), dir.str(), 21, DType::BF16, 60000);
    ASSERT_GT(made.files.size(), 3u);
    const ModelConfig& c = made.config;
    ShardSpec s = full_shard(c);
    s.q_head_begin = 1, s.q_head_count = c.num_heads - 1;
    s.expert_begin = 1, s.expert_count = c.num_experts - 2;
    s.expert_col_begin = 3, s.expert_col_count = c.moe_intermediate_size - 5;
    s.mlp_col_begin = 1, s.mlp_col_count = std::max<int64_t>(0, c.intermediate_size - 3);
    s.shared_col_begin = 2, s.shared_col_count = std::max<int64_t>(0, c.shared_expert_intermediate_size - 3);
    s.vocab_begin = 5, s.vocab_count = c.vocab_size - 9, s.vocab_rows = c.vocab_size - 2;
    auto ops = make_cpu_ops();
    auto checkpoint = open_checkpoint_source(dir.str());
    auto random = make_random_source(21, DType::BF16);
    const ModelWeights a = load_weights(*checkpoint, c, s, *ops);
    const ModelWeights b = load_weights(*random, c, s, *ops);
    EXPECT_EQ(a.source_bytes, b.source_bytes);
    EXPECT_GT(a.source_bytes, 0u);
    const auto ta = tensors_of(a), tb = tensors_of(b);
    ASSERT_EQ(ta.size(), tb.size());
    for (size_t i = 0; i < ta.size(); ++i) {
      ASSERT_EQ(ta[i]->shape, tb[i]->shape) << "tensor " << i;
      ASSERT_EQ(bytes_of(*ta[i]), bytes_of(*tb[i])) << "tensor " << i;
    }
  }
}

// Through load_weights too, a truncated shard is named (the error reaches the caller).
TEST(SliceReader, LoadWeightsNamesATruncatedShard) {
  TempDir dir("slice-reader-trunc");
  const RandomCheckpointResult made =
      write_random_checkpoint(hf_preset_json(Family::Olmoe, "tiny"), dir.str(), 4, DType::BF16, 60000);
  auto checkpoint = open_checkpoint_source(dir.str());
  const std::string shard = dir.file(made.files.at(made.files.size() / 2));
  ASSERT_NE(shard.find(".safetensors"), std::string::npos);
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) / 2);
  auto ops = make_cpu_ops();
  EXPECT_TRUE(throws_error([&] { load_weights(*checkpoint, made.config, full_shard(made.config), *ops); },
                           {shard, "truncated"}));
}

}  // namespace
}  // namespace moetron
