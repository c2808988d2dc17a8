#include "moetron/model/weights.hpp"

#include <cstring>
#include <optional>

#include "moetron/core/error.hpp"

namespace moetron {

ShardSpec full_shard(const ModelConfig& c) {
  ShardSpec s;
  s.layer_begin = 0;
  s.layer_end = c.num_layers;
  s.q_head_count = c.num_heads;
  s.kv_head_count = c.num_kv_heads;
  s.mlp_col_count = c.intermediate_size;
  s.shared_col_count = c.shared_expert_intermediate_size;
  s.expert_count = c.num_experts;
  s.expert_col_count = c.moe_intermediate_size;
  s.vocab_count = c.vocab_size;
  s.vocab_rows = c.vocab_size;
  return s;
}

Matrix2d as_matrix(const std::vector<int64_t>& shape) {
  Matrix2d m;
  m.rows = shape.size() == 1 ? 1 : (shape.empty() ? 0 : shape[0]);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  m.cols = m.rows == 0 ? 0 : n / m.rows;
  return m;
}

std::vector<int64_t> slice_shape(const std::vector<int64_t>& full, int64_t& row_begin,
                                 int64_t& row_count, int64_t& col_begin, int64_t& col_count) {
  const Matrix2d m = as_matrix(full);
  if (row_count < 0) row_count = m.rows - row_begin;
  if (col_count < 0) col_count = m.cols - col_begin;
  MOETRON_ASSERT(row_begin >= 0 && row_begin + row_count <= m.rows);
  MOETRON_ASSERT(col_begin >= 0 && col_begin + col_count <= m.cols);
  if (full.size() == 1) return {col_count};
  return {row_count, col_count};
}

namespace {

// A weight as the loader assembles it: its parts in row order, each a slice of a source tensor
// (read into host memory when named, or, from a source of generated values, left for the
// backend to make in place) or zero rows (padding), and its shape.
struct Piece {
  Tensor host;                                        // the slice as read (read sources)
  SliceRead slice;                                    // the slice, counts resolved (generated)
  std::optional<WeightSource::Generated> generated;  // set: the backend makes it
  int64_t zero_rows = 0, zero_cols = 0;               // > 0: padding instead of a slice
};
struct Assembly {
  std::vector<Piece> pieces;
  std::vector<int64_t> shape;
};

// The loader walks the shard twice: a dry pass that only lists the slices it reads, in order,
// so that the source can read them ahead (WeightSource::expect), then the load itself. The walk
// is written once; in the dry pass read() records instead of reading, and nothing is assembled
// or uploaded.
class Loader {
 public:
  Loader(WeightSource& src, const ModelConfig& c, const ShardSpec& s, const ExpertCopies& copies, Ops& ops)
      : src_(src), c_(c), s_(s), copies_(copies), ops_(ops), names_(c) {}

  ModelWeights load() {
    dry_run_ = true;
    walk();
    dry_run_ = false;
    src_.expect(std::move(reads_), [&ops = ops_](DType t, std::vector<int64_t> shape) {
      return ops.staging_tensor(t, std::move(shape));
    });
    try {
      ModelWeights w = walk();
      ops_.finish_weight_uploads();
      return w;
    } catch (...) {
      src_.expect({}, {});  // stop reading ahead into memory of an Ops that may soon be gone
      // Give the staging memory back (pinned on CUDA) to a caller that survives the error; a
      // failure here must not hide the first one.
      try {
        ops_.finish_weight_uploads();
      } catch (...) {
      }
      throw;
    }
  }

 private:
  ModelWeights walk() {
    ModelWeights w;
    if (s_.first_stage) w.embed = up(read_all(names_.embed()));
    if (s_.last_stage) {
      w.final_norm = up(read_all(names_.final_norm()));
      const TensorSpec head = c_.tie_word_embeddings ? names_.embed() : names_.lm_head();
      w.lm_head = up(lm_head_rows(head));
    }
    for (int64_t l = s_.layer_begin; l < s_.layer_end; ++l) w.layers.push_back(layer(l));
    w.bytes = bytes_;
    w.source_bytes = source_bytes_;
    return w;
  }

  Tensor up(const Assembly& a) {
    if (dry_run_) return {};
    Tensor t = a.pieces.at(0).generated ? generate(a) : ops_.upload_weight(on_host(a));
    bytes_ += t.nbytes();
    return t;
  }
  // A read weight in one host tensor: the slice itself, or its parts concatenated in staging
  // memory (the first part is always a slice: it gives the dtype).
  Tensor on_host(const Assembly& a) {
    if (a.pieces.size() == 1 && a.pieces[0].zero_rows == 0) return a.pieces[0].host.reshape(a.shape);
    const DType dtype = a.pieces.at(0).host.dtype;
    Tensor out = ops_.staging_tensor(dtype, a.shape);
    size_t offset = 0;
    for (const Piece& p : a.pieces) {
      const size_t bytes = p.zero_rows > 0 ? static_cast<size_t>(p.zero_rows * p.zero_cols) * dtype_size(dtype)
                                           : p.host.nbytes();
      MOETRON_ASSERT(p.zero_rows > 0 || p.host.dtype == dtype);
      MOETRON_ASSERT(offset + bytes <= out.nbytes());
      if (p.zero_rows > 0)
        std::memset(static_cast<char*>(out.data) + offset, 0, bytes);
      else if (bytes > 0)
        std::memcpy(static_cast<char*>(out.data) + offset, p.host.data, bytes);
      offset += bytes;
    }
    MOETRON_ASSERT(offset == out.nbytes());
    return out;
  }
  // A generated weight, made by the backend where it lives (no host copy on CUDA).
  Tensor generate(const Assembly& a) {
    std::vector<GeneratedRows> parts;
    for (const Piece& p : a.pieces) {
      GeneratedRows g;
      if (p.zero_rows > 0) {
        g.zeros = true;
        g.rows = p.zero_rows;
        g.cols = p.zero_cols;
      } else {
        MOETRON_ASSERT(p.generated && p.generated->dtype == a.pieces[0].generated->dtype);
        const int64_t ncols = as_matrix(p.slice.spec.shape).cols;
        g.fill = p.generated->fill;
        g.first = p.slice.row_begin * ncols + p.slice.col_begin;
        g.row_stride = ncols;
        g.rows = p.slice.row_count;
        g.cols = p.slice.col_count;
      }
      parts.push_back(g);
    }
    return ops_.generate_weight(parts, a.pieces[0].generated->dtype, a.shape);
  }
  // The LM head's real rows followed by zero rows up to vocab_rows (a padded vocab-parallel
  // shard: their logits are computed but never gathered into a row).
  Assembly lm_head_rows(const TensorSpec& head) {
    const int64_t H = c_.hidden_size, padding = s_.vocab_rows - s_.vocab_count;
    MOETRON_ASSERT(s_.vocab_count >= 0 && padding >= 0);
    Assembly real = rows(head, s_.vocab_begin, s_.vocab_count);  // may be empty: it gives the dtype
    if (padding == 0 || dry_run_) return real;
    Piece zeros;
    zeros.zero_rows = padding;
    zeros.zero_cols = H;
    return concat_rows({real, Assembly{{zeros}, {padding, H}}}, {s_.vocab_rows, H});
  }
  // Rows [begin, begin + count) of a matrix.
  Assembly rows(const TensorSpec& t, int64_t begin, int64_t count) { return read(t, begin, count, 0, -1); }
  // Columns [begin, begin + count) of a matrix, or elements of a vector.
  Assembly cols(const TensorSpec& t, int64_t begin, int64_t count) { return read(t, 0, -1, begin, count); }
  // Every read goes through here, so that the bytes read can be reported (startup rate). Read
  // sources are read here, in the walk's order (the order announced to expect()); generated
  // slices are only resolved.
  Assembly read(const TensorSpec& t, int64_t row_begin, int64_t row_count, int64_t col_begin, int64_t col_count) {
    if (dry_run_) {
      reads_.push_back({t, row_begin, row_count, col_begin, col_count});
      return {};
    }
    Piece p;
    p.generated = src_.generated(t);
    if (!p.generated) {
      p.host = src_.read(t, row_begin, row_count, col_begin, col_count);
      source_bytes_ += p.host.nbytes();
      std::vector<int64_t> shape = p.host.shape;
      return {{std::move(p)}, std::move(shape)};
    }
    std::vector<int64_t> shape = slice_shape(t.shape, row_begin, row_count, col_begin, col_count);
    p.slice = {t, row_begin, row_count, col_begin, col_count};
    source_bytes_ += static_cast<size_t>(row_count * col_count) * dtype_size(p.generated->dtype);
    return {{std::move(p)}, std::move(shape)};
  }
  Assembly read_all(const TensorSpec& t) { return read(t, 0, -1, 0, -1); }
  // Parts of one dtype stacked along dim 0 (rows) into a weight of `shape`.
  Assembly concat_rows(const std::vector<Assembly>& parts, std::vector<int64_t> shape) {
    if (dry_run_) return {};
    Assembly out{{}, std::move(shape)};
    for (const Assembly& a : parts) out.pieces.insert(out.pieces.end(), a.pieces.begin(), a.pieces.end());
    return out;
  }

  // A SwiGLU MLP's column slice: [gate rows; up rows] and down's matching columns.
  MlpWeights mlp(const TensorSpec& gate, const TensorSpec& upn, const TensorSpec& down,
                 int64_t begin, int64_t count) {
    MlpWeights m;
    m.gate_up = up(concat_rows({rows(gate, begin, count), rows(upn, begin, count)}, {2 * count, c_.hidden_size}));
    m.down = up(cols(down, begin, count));
    return m;
  }

  LayerWeights layer(int64_t l) {
    const int64_t H = c_.hidden_size, hd = c_.head_dim;
    const int64_t q0 = s_.q_head_begin * hd, qn = s_.q_head_count * hd;
    const int64_t k0 = s_.kv_head_begin * hd, kn = s_.kv_head_count * hd;
    LayerWeights w;
    w.index = l;
    w.input_norm = up(read_all(names_.input_norm(l)));
    w.post_attention_norm = up(read_all(names_.post_attention_norm(l)));
    AttentionWeights& a = w.attn;
    a.qkv = up(concat_rows({rows(names_.q_proj(l), q0, qn), rows(names_.k_proj(l), k0, kn),
                            rows(names_.v_proj(l), k0, kn)},
                           {qn + 2 * kn, H}));
    a.o = up(cols(names_.o_proj(l), q0, qn));
    if (c_.qkv_bias) {
      a.qkv_bias = up(concat_rows({cols(names_.q_bias(l), q0, qn), cols(names_.k_bias(l), k0, kn),
                                   cols(names_.v_bias(l), k0, kn)},
                                  {qn + 2 * kn}));
    }
    if (c_.o_bias) a.o_bias = up(read_all(names_.o_bias(l)));
    if (c_.qk_norm == QkNorm::PerHead) {
      a.q_norm = up(read_all(names_.q_norm(l)));
      a.k_norm = up(read_all(names_.k_norm(l)));
    } else if (c_.qk_norm == QkNorm::WholeProjection) {
      a.q_norm = up(cols(names_.q_norm(l), q0, qn));
      a.k_norm = up(cols(names_.k_norm(l), k0, kn));
    }
    w.is_moe = c_.layer_is_moe.at(static_cast<size_t>(l));
    if (!w.is_moe) {
      w.dense = mlp(names_.dense_gate(l), names_.dense_up(l), names_.dense_down(l), s_.mlp_col_begin,
                    s_.mlp_col_count);
      return w;
    }
    w.router = up(read_all(names_.router(l)));
    // This rank's experts, stacked: gate_up [E_local, 2 I_shard, H], down [E_local, H, I_shard];
    // then its copies of other sets' experts (redundant experts), numbered on from its first.
    const int64_t i0 = s_.expert_col_begin, in = s_.expert_col_count;
    std::vector<int64_t> held;
    for (int64_t e = s_.expert_begin; e < s_.expert_begin + s_.expert_count; ++e) held.push_back(e);
    const std::vector<int64_t> copied = copies_.of_layer(l);
    held.insert(held.end(), copied.begin(), copied.end());
    std::vector<Assembly> gate_up, down;
    for (int64_t e : held) {
      gate_up.push_back(rows(names_.expert_gate(l, e), i0, in));
      gate_up.push_back(rows(names_.expert_up(l, e), i0, in));
      down.push_back(cols(names_.expert_down(l, e), i0, in));
    }
    const int64_t count = static_cast<int64_t>(held.size());
    w.experts.first_expert = copies_.first_id >= 0 ? copies_.first_id : s_.expert_begin;
    w.experts.num_local = count;
    if (count > 0) {
      w.experts.gate_up = up(concat_rows(gate_up, {count, 2 * in, H}));
      w.experts.down = up(concat_rows(down, {count, H, in}));
    }
    if (c_.shared_expert_intermediate_size > 0) {
      w.shared = mlp(names_.shared_expert_gate_proj(l), names_.shared_expert_up(l),
                     names_.shared_expert_down(l), s_.shared_col_begin, s_.shared_col_count);
      if (c_.shared_expert_gate) w.shared_gate = up(read_all(names_.shared_expert_gate(l)));
    }
    return w;
  }

  WeightSource& src_;
  const ModelConfig& c_;
  const ShardSpec& s_;
  const ExpertCopies& copies_;
  Ops& ops_;
  WeightNames names_;
  size_t bytes_ = 0;
  size_t source_bytes_ = 0;
  bool dry_run_ = false;
  std::vector<SliceRead> reads_;  // listed by the dry pass
};

}  // namespace

std::vector<int64_t> ExpertCopies::of_layer(int64_t layer) const {
  return layer < static_cast<int64_t>(by_layer.size()) ? by_layer[static_cast<size_t>(layer)] : std::vector<int64_t>{};
}

ModelWeights load_weights(WeightSource& source, const ModelConfig& config, const ShardSpec& shard,
                          Ops& ops, const ExpertCopies& copies) {
  return Loader(source, config, shard, copies, ops).load();
}

}  // namespace moetron
