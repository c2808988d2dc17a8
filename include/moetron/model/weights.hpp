// The weights one rank holds: its pipeline stage's layers, its tensor-parallel slices of them,
// and its experts, already uploaded to the backend (Ops::upload_weight).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/core/range.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weight_names.hpp"

namespace moetron {

// What slice of the model a rank holds: the one description of a shard. layout_for (parallel/
// plan.hpp) fills it for a rank of a plan; the single-rank case is full_shard(config).
struct ShardSpec {
  int64_t layer_begin = 0, layer_end = 0;      // [begin, end) of global layer indices
  int64_t q_head_begin = 0, q_head_count = 0;  // attention heads
  int64_t kv_head_begin = 0, kv_head_count = 0;
  int64_t kv_replication = 1;                  // tp ranks holding each kv head (tp > kv heads)
  int64_t mlp_col_begin = 0, mlp_col_count = 0;        // dense MLP intermediate columns
  int64_t shared_col_begin = 0, shared_col_count = 0;  // shared expert intermediate columns
  int64_t expert_begin = 0, expert_count = 0;          // routed experts held
  int64_t expert_col_begin = 0, expert_col_count = 0;  // their intermediate columns
  // LM head: the real tokens [vocab_begin, +vocab_count) it holds (vocab_count may be 0 on a
  // tp rank past the vocabulary's end), in vocab_rows rows; rows past vocab_count are zero
  // padding, which every tp rank has the same vocab_rows for (core/range.hpp vocab_shard).
  int64_t vocab_begin = 0, vocab_count = 0, vocab_rows = 0;
  bool first_stage = true, last_stage = true;
  bool holds_o_bias = true;  // row-parallel biases are added by one tp rank only

  // The same ranges as Range values.
  Range layers() const { return {layer_begin, layer_end}; }
  Range q_heads() const { return {q_head_begin, q_head_begin + q_head_count}; }
  Range kv_heads() const { return {kv_head_begin, kv_head_begin + kv_head_count}; }
  Range dense_columns() const { return {mlp_col_begin, mlp_col_begin + mlp_col_count}; }
  Range shared_expert_columns() const { return {shared_col_begin, shared_col_begin + shared_col_count}; }
  Range experts() const { return {expert_begin, expert_begin + expert_count}; }
  Range expert_columns() const { return {expert_col_begin, expert_col_begin + expert_col_count}; }
  Range vocab() const { return {vocab_begin, vocab_begin + vocab_count}; }
  bool kv_replicated() const { return kv_replication > 1; }
};
ShardSpec full_shard(const ModelConfig& config);

// Reads a rectangular slice [row_begin, +row_count) x [col_begin, +col_count) of a tensor,
// viewed as 2-D (a 1-D tensor is one row), into an owned host tensor of the source's dtype.
// The spec (from WeightNames) gives the name and the shape the engine expects; a source whose
// tensor differs says so, naming it. Implemented over safetensors checkpoints and over
// deterministic random ("dummy") weights.
struct SliceRead {
  TensorSpec spec;
  int64_t row_begin = 0, row_count = -1, col_begin = 0, col_count = -1;
};

class WeightSource {
 public:
  // Host memory for a slice: Ops::staging_tensor, so that an upload from it is fastest.
  using StagingAlloc = std::function<Tensor(DType, std::vector<int64_t>)>;

  virtual ~WeightSource() = default;
  virtual Tensor read(const TensorSpec& spec, int64_t row_begin, int64_t row_count,
                      int64_t col_begin, int64_t col_count) = 0;
  Tensor read_all(const TensorSpec& spec) { return read(spec, 0, -1, 0, -1); }
  // The reads that follow are `reads`, in this order (load_weights announces them), so a
  // source may read ahead into memory from `staging`; the tensors read() returns then live in
  // it. An empty list cancels what is left of an earlier one (after an error). A read that
  // breaks the announced order is an Error. Sources that cannot gain from it ignore it.
  virtual void expect(std::vector<SliceRead> /*reads*/, StagingAlloc /*staging*/) {}

  // A source whose values are the deterministic generator's (dummy weights) names, for each
  // tensor, its parameters and the dtype it rounds to: the loader then has the backend make the
  // weights in place (Ops::generate_weight) instead of reading them. Others: nothing.
  struct Generated {
    RandomFill fill;
    DType dtype = DType::BF16;
  };
  virtual std::optional<Generated> generated(const TensorSpec& /*spec*/) const { return std::nullopt; }
};

// The 2-D reading of a tensor shape: a 1-D tensor is one row.
struct Matrix2d {
  int64_t rows = 0, cols = 0;
};
Matrix2d as_matrix(const std::vector<int64_t>& shape);
// Resolves -1 counts to "the rest" and checks the slice lies inside; returns its shape (1-D
// for 1-D tensors).
std::vector<int64_t> slice_shape(const std::vector<int64_t>& full, int64_t& row_begin,
                                 int64_t& row_count, int64_t& col_begin, int64_t& col_count);

struct AttentionWeights {
  // q, k and v stacked by rows, [q_local + 2 kv_local, H]: one GEMM projects all three.
  Tensor qkv;
  Tensor o;                               // [H, q_local]
  Tensor qkv_bias, o_bias;                // undefined when the family has none
  Tensor q_norm, k_norm;                  // QK-norm weights (whole-projection slice or per head)
};

struct MlpWeights {
  Tensor gate_up;  // [2 * I_local, H]
  Tensor down;     // [H, I_local]
};

struct LayerWeights {
  int64_t index = 0;  // global layer index
  Tensor input_norm, post_attention_norm;
  AttentionWeights attn;
  bool is_moe = false;
  Tensor router;        // [E, H] (replicated)
  Tensor router_bias;   // F32 [E], added to the router logits: --routing-skew only (else undefined)
  ExpertWeights experts;
  MlpWeights shared;    // shared expert (qwen2_moe), undefined otherwise
  Tensor shared_gate;   // [1, H]
  MlpWeights dense;     // non-MoE layers
};

struct ModelWeights {
  Tensor embed;       // [V, H] on the first stage
  Tensor final_norm;  // on the last stage
  Tensor lm_head;     // [vocab_rows, H] on the last stage (the embedding's rows when tied)
  std::vector<LayerWeights> layers;
  size_t bytes = 0;         // as held by the backend
  size_t source_bytes = 0;  // as read from the source (the shard's slices, in its dtype)
};

// Copies of other expert-parallel sets' experts that a rank holds besides its own (redundant
// experts, parallel/expert_replicas.hpp): stacked after its own experts in each layer's
// ExpertWeights, whose ids then start at first_id (the rank's first slot id) instead of
// shard.expert_begin.
struct ExpertCopies {
  int64_t first_id = -1;                        // -1: no copies, ids are global experts
  std::vector<std::vector<int64_t>> by_layer;  // per global layer: the experts copied, in order
  std::vector<int64_t> of_layer(int64_t layer) const;
};

ModelWeights load_weights(WeightSource& source, const ModelConfig& config, const ShardSpec& shard,
                          Ops& ops, const ExpertCopies& copies = {});

}  // namespace moetron
