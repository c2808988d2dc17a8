// Paged-KV attention and the cache append against the CPU reference: prefill, chunked prefill
// and decode (split along the KV length), GQA groups of 1 to 32, scattered cache blocks, and a
// cache poisoned with NaN everywhere nothing was written (a kernel that reads a wrong slot fails).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "gpu_test_util.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaAttention = GpuVsCpu;

struct SeqSpec {
  int q_len, kv_len;  // new tokens this step, tokens in the cache after it
};
struct AttentionCase {
  int nq, nk, hd, block_size;
  std::vector<SeqSpec> seqs;
};

std::string describe(const AttentionCase& c) {
  std::string s = "nq=" + std::to_string(c.nq) + " nk=" + std::to_string(c.nk) +
                  " hd=" + std::to_string(c.hd) + " bs=" + std::to_string(c.block_size) + " seqs";
  for (const SeqSpec& q : c.seqs) s += " " + std::to_string(q.q_len) + "/" + std::to_string(q.kv_len);
  return s;
}

TEST_F(CudaAttention, PagedAttentionMatchesReference) {
  const std::vector<AttentionCase> cases = {
      {4, 4, 64, 16, {{5, 5}, {17, 17}, {1, 1}}},                  // prefill, MHA
      {8, 2, 128, 16, {{3, 40}, {33, 33}, {1, 129}}},              // chunked prefill + decode
      {32, 4, 128, 16, {{1, 1}, {1, 17}, {1, 300}, {1, 1000}, {1, 3000}}},  // decode, splits
      {16, 16, 128, 32, {{1, 4097}}},                              // one long decode
      {8, 1, 64, 16, {{129, 129}}},                                // MQA prefill
      {32, 1, 128, 8, {{3, 3}, {2, 70}}},                          // group of 32
      {8, 8, 128, 16, {{2, 5000}, {7, 7}}},                        // tensor cores + splits
      {16, 4, 64, 16, {{70, 200}, {1, 64}, {65, 65}}},             // mixed, partial tiles
      {64, 1, 64, 16, {{1, 100}, {2, 2}, {1, 1}}},                 // group of 64, one token a tile
      {4, 2, 16, 4, {{9, 9}, {1, 30}}},                            // the tiny fixtures' heads
      {8, 4, 32, 16, {{5, 70}, {1, 1}}},
      {12, 4, 96, 16, {{33, 40}, {1, 500}}},
  };
  for (const AttentionCase& c : cases) {
    SCOPED_TRACE(describe(c));
    const int S = static_cast<int>(c.seqs.size());
    const int kv_width = c.nk * c.hd;
    int max_blocks = 0, total_blocks = 0, total_kv = 0, T = 0, max_kv = 0;
    for (const SeqSpec& s : c.seqs) {
      const int blocks = (s.kv_len + c.block_size - 1) / c.block_size;
      max_blocks = std::max(max_blocks, blocks);
      total_blocks += blocks;
      total_kv += s.kv_len;
      T += s.q_len;
      max_kv = std::max(max_kv, s.kv_len);
    }
    const int num_blocks = total_blocks + 3;  // spare blocks stay poisoned
    std::vector<int32_t> block_ids(num_blocks);
    std::iota(block_ids.begin(), block_ids.end(), 0);
    std::shuffle(block_ids.begin(), block_ids.end(), rng_);

    std::vector<int32_t> tables(static_cast<size_t>(S) * max_blocks, 0), all_slots, query_start{0},
        kv_lens, positions;
    int next_block = 0;
    for (int s = 0; s < S; ++s) {
      const SeqSpec& q = c.seqs[s];
      const int blocks = (q.kv_len + c.block_size - 1) / c.block_size;
      for (int b = 0; b < blocks; ++b) tables[s * max_blocks + b] = block_ids[next_block++];
      for (int p = 0; p < q.kv_len; ++p)
        all_slots.push_back(tables[s * max_blocks + p / c.block_size] * c.block_size +
                            p % c.block_size);
      query_start.push_back(query_start.back() + q.q_len);
      for (int j = 0; j < q.q_len; ++j) positions.push_back(q.kv_len - q.q_len + j);
      kv_lens.push_back(q.kv_len);
    }

    // The cache as earlier steps and this one leave it: every token of every sequence.
    KvCache cpu_cache{cpu().alloc(DType::F32, {num_blocks, c.block_size, c.nk, c.hd}),
                      cpu().alloc(DType::F32, {num_blocks, c.block_size, c.nk, c.hd})};
    KvCache gpu_cache{gpu().alloc(DType::BF16, {num_blocks, c.block_size, c.nk, c.hd}),
                      gpu().alloc(DType::BF16, {num_blocks, c.block_size, c.nk, c.hd})};
    for (Tensor* t : {&cpu_cache.k, &cpu_cache.v}) poison(cpu(), *t);
    for (Tensor* t : {&gpu_cache.k, &gpu_cache.v}) poison(gpu(), *t);
    Pair k_all = random_activation({total_kv, kv_width});
    Pair v_all = random_activation({total_kv, kv_width});
    Pair slots = ints(all_slots, {total_kv});
    BatchTensors fill_cpu, fill_gpu;
    fill_cpu.num_tokens = fill_gpu.num_tokens = total_kv;
    fill_cpu.block_size = fill_gpu.block_size = c.block_size;
    fill_cpu.slot_mapping = slots.cpu;
    fill_gpu.slot_mapping = slots.gpu;
    cpu().kv_append(k_all.cpu, v_all.cpu, cpu_cache, fill_cpu);
    gpu().kv_append(k_all.gpu, v_all.gpu, gpu_cache, fill_gpu);

    Pair qs = ints(query_start, {S + 1});
    Pair pos = ints(positions, {T});
    Pair lens = ints(kv_lens, {S});
    Pair tbl = ints(tables, {S, max_blocks});
    BatchTensors b_cpu, b_gpu;
    for (BatchTensors* b : {&b_cpu, &b_gpu}) {
      b->num_tokens = T;
      b->num_seqs = S;
      b->max_blocks_per_seq = max_blocks;
      b->block_size = c.block_size;
      b->max_kv_len = max_kv;
    }
    b_cpu.positions = pos.cpu;
    b_gpu.positions = pos.gpu;
    b_cpu.query_start = qs.cpu;
    b_gpu.query_start = qs.gpu;
    b_cpu.kv_lens = lens.cpu;
    b_gpu.kv_lens = lens.gpu;
    b_cpu.block_tables = tbl.cpu;
    b_gpu.block_tables = tbl.gpu;

    Pair q = random_activation({T, c.nq * c.hd});
    Pair out = output(DType::BF16, {T, c.nq * c.hd});
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    cpu().attention(q.cpu, cpu_cache, b_cpu, c.nq, c.nk, c.hd, scale, out.cpu);
    gpu().attention(q.gpu, gpu_cache, b_gpu, c.nq, c.nk, c.hd, scale, out.gpu);
    expect_close(read(gpu(), out.gpu), read(cpu(), out.cpu), kBf16Tolerance, "attention");

    // The appended rows themselves, read back through the block tables.
    std::vector<float> gk = read(gpu(), gpu_cache.k), ck = read(cpu(), cpu_cache.k);
    double worst = 0.0;
    for (int32_t slot : all_slots)
      for (int i = 0; i < kv_width; ++i)
        worst = std::max(worst, std::abs(double(gk[size_t(slot) * kv_width + i]) -
                                         ck[size_t(slot) * kv_width + i]));
    EXPECT_EQ(worst, 0.0) << "kv_append must copy bf16 values exactly";
    gpu().reset_temps();
  }
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
