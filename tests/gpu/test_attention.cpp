// Paged-KV attention and the cache append against the CPU reference, as a table (op_table.hpp):
// prefill, chunked prefill and decode (split along the KV length), GQA groups of 1 to 64, head
// dims 16 to 128, scattered cache blocks, and a cache poisoned with NaN everywhere nothing was
// written (a kernel that reads a wrong slot fails).
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

// Fills a cache as earlier steps and this one leave it (kv_append of every token of every
// sequence), then runs attention over it. Outputs: the attention and the appended rows.
CaseOutputs run_attention(CaseInputs& in, const AttentionCase& c) {
  Ops& ops = in.ops;
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
  std::shuffle(block_ids.begin(), block_ids.end(), in.rng);

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

  KvCache cache{in.output_activation({num_blocks, c.block_size, c.nk, c.hd}),
                in.output_activation({num_blocks, c.block_size, c.nk, c.hd})};
  Tensor k_all = in.activation({total_kv, kv_width});
  Tensor v_all = in.activation({total_kv, kv_width});
  BatchTensors fill;
  fill.num_tokens = total_kv;
  fill.block_size = c.block_size;
  fill.slot_mapping = in.i32(all_slots, {total_kv});
  ops.kv_append(k_all, v_all, cache, fill);

  BatchTensors batch;
  batch.num_tokens = T;
  batch.num_seqs = S;
  batch.max_blocks_per_seq = max_blocks;
  batch.block_size = c.block_size;
  batch.max_kv_len = max_kv;
  batch.positions = in.i32(positions, {T});
  batch.query_start = in.i32(query_start, {S + 1});
  batch.kv_lens = in.i32(kv_lens, {S});
  batch.block_tables = in.i32(tables, {S, max_blocks});
  Tensor q = in.activation({T, c.nq * c.hd});
  Tensor out = in.output_activation({T, c.nq * c.hd});
  ops.attention(q, cache, batch, c.nq, c.nk, c.hd, 1.0f / std::sqrt(static_cast<float>(c.hd)),
                out);

  // The appended rows themselves, read back through the block tables (the unwritten slots
  // hold the poison on both backends).
  const std::vector<float> k_cache = read_as_float(ops, cache.k), v_cache = read_as_float(ops, cache.v);
  std::vector<float> k_rows, v_rows;
  for (int32_t slot : all_slots) {
    const size_t at = static_cast<size_t>(slot) * kv_width;
    k_rows.insert(k_rows.end(), k_cache.begin() + at, k_cache.begin() + at + kv_width);
    v_rows.insert(v_rows.end(), v_cache.begin() + at, v_cache.begin() + at + kv_width);
  }
  // Attention: fp32 softmax and accumulation, bf16 inputs and output: kBf16Tolerance.
  // kv_append copies bf16 values: exact.
  return {{"attention", read_as_float(ops, out), kBf16Tolerance},
          {"kv_append k", k_rows, 0.0},
          {"kv_append v", v_rows, 0.0}};
}

// The fused attention inputs (QK-norm, RoPE, KV append from one QKV projection) against the
// CPU backend's sequence of single operators: every norm kind, GQA and MHA, head dims 16 to
// 128, scattered cache slots, and rows too wide for the fused kernel's
// shared memory (the CUDA backend falls back to the single operators).
TEST_F(CudaAttention, AttentionInputsMatchReference) {
  struct Heads { int64_t nq, nk, hd; HeadNorm norm; double theta; };
  const std::vector<Heads> heads = {
      {16, 16, 128, HeadNorm::WholeRow, 10000.0},  // OLMoE
      {32, 4, 128, HeadNorm::PerHead, 1e6},        // Qwen3-MoE
      {32, 8, 128, HeadNorm::None, 1e6},           // Mixtral
      {12, 3, 64, HeadNorm::PerHead, 10000.0},     // odd head counts
      {4, 2, 16, HeadNorm::WholeRow, 10000.0},     // the tiny fixtures' heads
      {96, 8, 128, HeadNorm::WholeRow, 10000.0},   // over 48 KiB: the fallback
  };
  std::vector<OpCase> cases;
  for (const Heads& h : heads) {
    for (int64_t tokens : {int64_t{1}, int64_t{17}, int64_t{129}}) {
      cases.push_back({"attention_inputs T=" + std::to_string(tokens) + " nq=" + std::to_string(h.nq) +
                           " nk=" + std::to_string(h.nk) + " hd=" + std::to_string(h.hd) +
                           " norm=" + std::to_string(static_cast<int>(h.norm)),
                       [h, tokens](CaseInputs& in) {
        const int64_t q_cols = h.nq * h.hd, kv_cols = h.nk * h.hd, block_size = 16;
        const int64_t blocks = (tokens + 2 + block_size - 1) / block_size + 1;
        // Distinct scattered slots. (A padding slot, -1, is not stored on CUDA, but the CPU
        // reference refuses it: graph replays of padded batches cover it, gpu_graphs.sh.)
        std::vector<int32_t> slots(static_cast<size_t>(blocks * block_size));
        std::iota(slots.begin(), slots.end(), 0);
        std::shuffle(slots.begin(), slots.end(), in.rng);
        slots.resize(static_cast<size_t>(tokens));
        BatchTensors batch;
        batch.num_tokens = tokens;
        batch.block_size = block_size;
        batch.slot_mapping = in.i32(slots, {tokens});
        Tensor positions = in.i32(in.ints(tokens, 0, 8191), {tokens});
        QkNormSpec norm;
        norm.kind = h.norm;
        norm.eps = 1e-6f;
        if (h.norm != HeadNorm::None) {
          const bool per_head = h.norm == HeadNorm::PerHead;
          norm.q_weight = in.weight({per_head ? h.hd : q_cols});
          norm.k_weight = in.weight({per_head ? h.hd : kv_cols});
        }
        Tensor qkv = in.activation({tokens, q_cols + 2 * kv_cols}, 3.0f);
        KvCache cache{in.output_activation({blocks, block_size, h.nk, h.hd}),
                      in.output_activation({blocks, block_size, h.nk, h.hd})};
        Tensor q = in.output_activation({tokens, q_cols});
        in.ops.attention_inputs(qkv, norm, positions, h.hd, h.theta, cache, batch, q);
        const std::vector<float> k_cache = read_as_float(in.ops, cache.k);
        const std::vector<float> v_cache = read_as_float(in.ops, cache.v);
        std::vector<float> k_rows, v_rows;
        for (int32_t slot : slots) {
          const size_t at = static_cast<size_t>(slot) * kv_cols;
          k_rows.insert(k_rows.end(), k_cache.begin() + at, k_cache.begin() + at + kv_cols);
          v_rows.insert(v_rows.end(), v_cache.begin() + at, v_cache.begin() + at + kv_cols);
        }
        // fp32 norm and rotation, bf16 roundings as the single operators make them (the sum of
        // squares in another order may move a rounding): kBf16Tolerance. v is copied: exact.
        return CaseOutputs{{"q", read_as_float(in.ops, q), kBf16Tolerance},
                           {"k rows", k_rows, kBf16Tolerance},
                           {"v rows", v_rows, 0.0}};
      }});
    }
  }
  run_cases(cases);
}

// n sequences of new_tokens(i) tokens each and irregular cache lengths: batches past the 32
// sequences a warp scans at a time when blocks look for their tiles.
std::vector<SeqSpec> many_sequences(int n, int (*new_tokens)(int)) {
  std::vector<SeqSpec> seqs;
  for (int i = 0; i < n; ++i) {
    const int q = new_tokens(i);
    seqs.push_back({q, q + (37 * i) % 301});
  }
  return seqs;
}

TEST_F(CudaAttention, PagedAttentionMatchesReference) {
  const auto one_token = [](int) { return 1; };
  const auto some_tokens = [](int i) { return 1 + (i * 7) % 23; };
  const std::vector<AttentionCase> shapes = {
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
      // Decode only (one token a sequence): the warps split each key tile.
      {16, 16, 128, 16, {{1, 1}, {1, 15}, {1, 63}, {1, 64}, {1, 65}, {1, 577}}},  // MHA, ragged tiles
      {32, 2, 96, 16, {{1, 130}, {1, 7}, {1, 2049}}},                  // group of 16, splits
      {12, 4, 64, 16, {{1, 1000}, {1, 3}}},                            // group of 3
      {4, 4, 16, 4, {{1, 9}, {1, 200}}},                               // tiny head dim
      {8, 2, 32, 8, {{1, 33}}},                                        // one sequence, group of 4
      {16, 16, 128, 16, many_sequences(70, one_token)},  // decode past two scan rounds
      {4, 1, 64, 16, many_sequences(33, one_token)},     // decode, group of 4
      // Mixed batches past one scan round: tiles of 1-23 tokens.
      {8, 2, 64, 16, many_sequences(45, some_tokens)},
      {16, 16, 128, 16, many_sequences(40, some_tokens)},
  };
  std::vector<OpCase> cases;
  for (const AttentionCase& c : shapes)
    cases.push_back({"attention " + describe(c), [c](CaseInputs& in) { return run_attention(in, c); }});
  run_cases(cases);
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
