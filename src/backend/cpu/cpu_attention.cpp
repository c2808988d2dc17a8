// CpuOps attention over the paged KV cache: append the step's keys/values, then causal
// softmax attention of each new query over its sequence's cached tokens.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_math.hpp"
#include "cpu_ops.hpp"

namespace moetron {

using cpu::f32;
using cpu::i32;

namespace {

// Cache geometry, read from a [num_blocks, block_size, kv_heads, head_dim] tensor.
struct CacheShape {
  int64_t num_blocks, block_size, kv_heads, head_dim;
  int64_t row_elems() const { return kv_heads * head_dim; }  // one token's K (or V)
};

// The Ops contract (ops_contract.cpp) has checked it is 4-D and matches the batch and heads.
CacheShape cache_shape(const Tensor& cache) {
  return {cache.dim(0), cache.dim(1), cache.dim(2), cache.dim(3)};
}

// Where token j of a sequence lives, given the sequence's row of the block table.
int64_t cache_slot(const int32_t* block_table, int64_t max_blocks, const CacheShape& c, int64_t j) {
  MOETRON_ASSERT(j / c.block_size < max_blocks);
  int64_t block = block_table[j / c.block_size];
  MOETRON_ASSERT(block >= 0 && block < c.num_blocks);
  return block * c.block_size + j % c.block_size;
}

}  // namespace

void CpuOps::do_kv_append(const Tensor& k, const Tensor& v, KvCache& cache,
                          const BatchTensors& batch) {
  const CacheShape c = cache_shape(cache.k);
  const int32_t* slots = i32(batch.slot_mapping);
  const size_t row_bytes = static_cast<size_t>(c.row_elems()) * sizeof(float);
  for (int64_t t = 0; t < batch.num_tokens; ++t) {
    MOETRON_ASSERT(slots[t] >= 0 && slots[t] < c.num_blocks * c.block_size);
    std::memcpy(f32(cache.k) + slots[t] * c.row_elems(), f32(k) + t * c.row_elems(), row_bytes);
    std::memcpy(f32(cache.v) + slots[t] * c.row_elems(), f32(v) + t * c.row_elems(), row_bytes);
  }
}

void CpuOps::do_attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch,
                          int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                          Tensor& out) {
  const CacheShape c = cache_shape(cache.k);
  const int64_t group = num_q_heads / num_kv_heads;
  const int32_t* query_start = i32(batch.query_start);
  const int32_t* kv_lens = i32(batch.kv_lens);
  const int32_t* positions = i32(batch.positions);
  MOETRON_ASSERT(query_start[0] == 0 && query_start[batch.num_seqs] == batch.num_tokens);

  // The sequence of every query row, so that (row, head) pairs can be shared among threads.
  std::vector<int64_t> seq_of_row(batch.num_tokens);
  for (int64_t s = 0; s < batch.num_seqs; ++s)
    for (int64_t r = query_start[s]; r < query_start[s + 1]; ++r) seq_of_row[r] = s;

  const float* kc = f32(cache.k);
  const float* vc = f32(cache.v);
  const int64_t items = batch.num_tokens * num_q_heads;
  cpu::parallel_for(items, std::max<int64_t>(1, batch.max_kv_len) * head_dim * 2,
                    [&](int64_t begin, int64_t end) {
    std::vector<float> probs;
    std::vector<int64_t> slots;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / num_q_heads, head = item % num_q_heads;
      const int64_t s = seq_of_row[row], kv_head = head / group;
      const int64_t attended = static_cast<int64_t>(positions[row]) + 1;  // causal: 0..position
      MOETRON_ASSERT(attended >= 1 && attended <= kv_lens[s]);
      const int32_t* table = i32(batch.block_tables) + s * batch.max_blocks_per_seq;
      const float* qv = f32(q) + row * q.cols() + head * head_dim;

      slots.resize(attended);
      probs.resize(attended);
      float max_score = -INFINITY;
      for (int64_t j = 0; j < attended; ++j) {
        slots[j] = cache_slot(table, batch.max_blocks_per_seq, c, j);
        const float* kv = kc + slots[j] * c.row_elems() + kv_head * head_dim;
        probs[j] = cpu::dot(qv, kv, head_dim) * scale;
        max_score = std::max(max_score, probs[j]);
      }
      float sum = 0.0f;
      for (int64_t j = 0; j < attended; ++j) {
        probs[j] = std::exp(probs[j] - max_score);
        sum += probs[j];
      }
      float* o = f32(out) + row * out.cols() + head * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (int64_t j = 0; j < attended; ++j) {
        const float p = probs[j] / sum;
        const float* vv = vc + slots[j] * c.row_elems() + kv_head * head_dim;
        for (int64_t d = 0; d < head_dim; ++d) o[d] += p * vv[d];
      }
    }
  });
}

}  // namespace moetron
