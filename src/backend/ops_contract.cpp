// The Ops contract, checked once for every backend: each public operator checks its arguments
// (dtypes, devices, shapes, host-known index ranges) and calls the backend's do_<name>.
// MOETRON_CHECK formats its message only when the check fails, so a passing call costs a few
// comparisons and no allocation (these run on the decode hot path).
#include <cstdint>
#include <utility>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace {

const char* device_name(Device d) { return d == Device::Cpu ? "cpu" : "cuda"; }

// "an empty tensor" or "bf16[4, 64] on cuda": what a message says the caller passed.
std::string got(const Tensor& t) { return t.defined() ? t.describe() : "an empty tensor"; }

// t is a defined tensor of `dtype` on `device`.
void expect(const Tensor& t, DType dtype, Device device, const char* op, const char* arg) {
  MOETRON_CHECK(t.defined() && t.dtype == dtype && t.device == device,
                "Ops::" << op << ": " << arg << " must be " << dtype_name(dtype) << " on "
                        << device_name(device) << ", got " << got(t));
}

// t is a defined tensor of `a` or `b` (which may be the same) on `device`.
void expect_either(const Tensor& t, DType a, DType b, Device device, const char* op,
                   const char* arg) {
  if (a == b) return expect(t, a, device, op, arg);
  MOETRON_CHECK(t.defined() && (t.dtype == a || t.dtype == b) && t.device == device,
                "Ops::" << op << ": " << arg << " must be " << dtype_name(a) << " or "
                        << dtype_name(b) << " on " << device_name(device) << ", got " << got(t));
}

void expect_on(const Tensor& t, Device device, const char* op, const char* arg) {
  MOETRON_CHECK(t.device == device || t.numel() == 0,
                "Ops::" << op << ": " << arg << " must be on " << device_name(device) << ", got "
                        << t.describe());
}

void expect_numel(const Tensor& t, int64_t numel, const char* op, const char* arg,
                  const char* because) {
  MOETRON_CHECK(t.numel() == numel, "Ops::" << op << ": " << arg << " has " << t.numel()
                                            << " elements, expected " << numel << " ("
                                            << because << ")");
}

// t is [rows, cols] read as 2-D (the last dimension is the row width).
void expect_rows_cols(const Tensor& t, int64_t rows, int64_t cols, const char* op,
                      const char* arg) {
  MOETRON_CHECK(t.rows() == rows && t.cols() == cols,
                "Ops::" << op << ": " << arg << " " << t.describe() << " must be [" << rows
                        << ", " << cols << "]");
}

}  // namespace

// ---- memory -------------------------------------------------------------------------------------

void Ops::copy_from_host(Tensor& dst, const void* src) {
  expect_on(dst, device(), "copy_from_host", "dst");
  do_copy_from_host(dst, src);
}

void Ops::to_host(const Tensor& src, void* dst) {
  expect_on(src, device(), "to_host", "src");
  do_to_host(src, dst);
}

void Ops::copy(const Tensor& src, Tensor& dst) {
  MOETRON_CHECK(src.dtype == dst.dtype && src.numel() == dst.numel(),
                "Ops::copy: src " << src.describe() << " and dst " << dst.describe()
                                  << " differ in dtype or size");
  expect_on(src, device(), "copy", "src");
  expect_on(dst, device(), "copy", "dst");
  do_copy(src, dst);
}

void Ops::copy_columns(const Tensor& src, int64_t width, Tensor& dst, int64_t col) {
  MOETRON_CHECK(src.dtype == dst.dtype && src.rows() == dst.rows() && width >= 0 &&
                    width <= src.cols() && col >= 0 && col + width <= dst.cols(),
                "Ops::copy_columns: " << width << " columns of src " << src.describe()
                                      << " do not fit dst " << dst.describe() << " at column " << col);
  expect_on(src, device(), "copy_columns", "src");
  expect_on(dst, device(), "copy_columns", "dst");
  if (width > 0) do_copy_columns(src, width, dst, col);
}

void Ops::take_columns(const Tensor& src, int64_t col, int64_t width, Tensor& dst) {
  MOETRON_CHECK(src.dtype == dst.dtype && src.rows() == dst.rows() && width >= 0 && col >= 0 &&
                    col + width <= src.cols() && dst.cols() == width,
                "Ops::take_columns: columns [" << col << ", " << col + width << ") of src "
                                               << src.describe() << " do not fill dst "
                                               << dst.describe());
  expect_on(src, device(), "take_columns", "src");
  expect_on(dst, device(), "take_columns", "dst");
  if (width > 0 && src.rows() > 0) do_take_columns(src, col, width, dst);
}

void Ops::fill_zero(Tensor& t) {
  expect_on(t, device(), "fill_zero", "t");
  do_fill_zero(t);
}

// ---- dense math ---------------------------------------------------------------------------------

void Ops::embed(const Tensor& ids, const Tensor& table, Tensor& out) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(ids, DType::I32, d, "embed", "ids");
  expect(table, act, d, "embed", "table");
  expect(out, act, d, "embed", "out");
  MOETRON_CHECK(table.ndim() == 2, "Ops::embed: table " << table.describe() << " must be [V, H]");
  expect_rows_cols(out, ids.numel(), table.cols(), "embed", "out");
  do_embed(ids, table, out);
}

namespace {
// x (and every tensor of its size) viewed as rows of w's width.
void expect_norm_rows(const Tensor& x, const Tensor& w, const char* op, const char* arg) {
  MOETRON_CHECK(w.numel() > 0 && x.numel() % w.numel() == 0,
                "Ops::" << op << ": w has " << w.numel() << " elements, " << arg << " "
                        << x.describe() << " is not a whole number of rows of that width");
}
}  // namespace

void Ops::rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(x, act, d, "rmsnorm", "x");
  expect(w, act, d, "rmsnorm", "w");
  expect(out, act, d, "rmsnorm", "out");
  expect_norm_rows(x, w, "rmsnorm", "x");
  expect_numel(out, x.numel(), "rmsnorm", "out", "the size of x");
  do_rmsnorm(x, w, eps, out);
}

void Ops::add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                      Tensor& out) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(residual, act, d, "add_rmsnorm", "residual");
  expect(delta, act, d, "add_rmsnorm", "delta");
  expect(w, act, d, "add_rmsnorm", "w");
  expect(out, act, d, "add_rmsnorm", "out");
  expect_norm_rows(residual, w, "add_rmsnorm", "residual");
  expect_numel(delta, residual.numel(), "add_rmsnorm", "delta", "the size of residual");
  expect_numel(out, residual.numel(), "add_rmsnorm", "out", "the size of residual");
  do_add_rmsnorm(residual, delta, w, eps, out);
}

void Ops::row_sumsq(const Tensor& x, Tensor& sumsq) {
  const Device d = device();
  expect(x, activation_dtype(), d, "row_sumsq", "x");
  expect(sumsq, DType::F32, d, "row_sumsq", "sumsq");
  expect_numel(sumsq, x.rows(), "row_sumsq", "sumsq", "one per row of x");
  do_row_sumsq(x, sumsq);
}

void Ops::rmsnorm_with_sumsq(const Tensor& x, const Tensor& sumsq, int64_t total_cols,
                             const Tensor& w, float eps, Tensor& out) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(x, act, d, "rmsnorm_with_sumsq", "x");
  expect(sumsq, DType::F32, d, "rmsnorm_with_sumsq", "sumsq");
  expect(w, act, d, "rmsnorm_with_sumsq", "w");
  expect(out, act, d, "rmsnorm_with_sumsq", "out");
  expect_numel(w, x.cols(), "rmsnorm_with_sumsq", "w", "one per column of x");
  expect_numel(sumsq, x.rows(), "rmsnorm_with_sumsq", "sumsq", "one per row of x");
  expect_numel(out, x.numel(), "rmsnorm_with_sumsq", "out", "the size of x");
  MOETRON_CHECK(total_cols >= x.cols(), "Ops::rmsnorm_with_sumsq: total_cols "
                                            << total_cols << " is smaller than x's "
                                            << x.cols() << " columns");
  do_rmsnorm_with_sumsq(x, sumsq, total_cols, w, eps, out);
}

void Ops::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(x, act, d, "linear", "x");
  expect(w, act, d, "linear", "w");
  expect_either(out, act, DType::F32, d, "linear", "out");
  MOETRON_CHECK(w.ndim() == 2 && w.cols() == x.cols(),
                "Ops::linear: w " << w.describe() << " must be [N, " << x.cols()
                                  << "] for x " << x.describe());
  expect_rows_cols(out, x.rows(), w.dim(0), "linear", "out");
  if (bias && bias->defined()) {
    expect(*bias, act, d, "linear", "bias");
    expect_numel(*bias, w.dim(0), "linear", "bias", "one per row of w");
  }
  do_linear(x, w, bias, out);
}

void Ops::add_inplace(Tensor& acc, const Tensor& x) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(acc, act, d, "add_inplace", "acc");
  expect(x, act, d, "add_inplace", "x");
  expect_numel(x, acc.numel(), "add_inplace", "x", "the size of acc");
  do_add_inplace(acc, x);
}

void Ops::clamp_inplace(Tensor& x, float limit) {
  expect(x, activation_dtype(), device(), "clamp_inplace", "x");
  do_clamp_inplace(x, limit);
}

void Ops::rope(Tensor& q, Tensor& k, const Tensor& positions, int64_t head_dim, double theta) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(q, act, d, "rope", "q");
  expect(k, act, d, "rope", "k");
  expect(positions, DType::I32, d, "rope", "positions");
  MOETRON_CHECK(head_dim > 0 && head_dim % 2 == 0 && q.cols() % head_dim == 0 &&
                    k.cols() % head_dim == 0,
                "Ops::rope: head_dim " << head_dim << " must be even and divide the widths of q "
                                       << q.describe() << " and k " << k.describe());
  MOETRON_CHECK(q.rows() == positions.numel() && k.rows() == positions.numel(),
                "Ops::rope: q " << q.describe() << ", k " << k.describe() << " and positions "
                                << positions.describe() << " disagree on the token count");
  do_rope(q, k, positions, head_dim, theta);
}

// ---- attention ----------------------------------------------------------------------------------

namespace {
// A layer's cache: k and v of the same [num_blocks, block_size, kv_heads, head_dim] shape.
void expect_cache(const KvCache& cache, DType act, Device d, int64_t block_size, const char* op) {
  expect(cache.k, act, d, op, "cache.k");
  expect(cache.v, act, d, op, "cache.v");
  MOETRON_CHECK(cache.k.ndim() == 4 && cache.k.dim(1) == block_size &&
                    cache.v.shape == cache.k.shape,
                "Ops::" << op << ": cache.k " << cache.k.describe() << " and cache.v "
                        << cache.v.describe() << " must both be [blocks, " << block_size
                        << " (batch.block_size), kv_heads, head_dim]");
}
}  // namespace

void Ops::attention_inputs(const Tensor& qkv, const QkNormSpec& norm, const Tensor& positions,
                           int64_t head_dim, double theta, KvCache& cache,
                           const BatchTensors& batch, Tensor& q) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(qkv, act, d, "attention_inputs", "qkv");
  expect(q, act, d, "attention_inputs", "q");
  expect(positions, DType::I32, d, "attention_inputs", "positions");
  expect(batch.slot_mapping, DType::I32, d, "attention_inputs", "batch.slot_mapping");
  expect_cache(cache, act, d, batch.block_size, "attention_inputs");
  const int64_t kv_cols = cache.k.dim(2) * cache.k.dim(3), q_cols = q.cols();
  MOETRON_CHECK(cache.k.dim(3) == head_dim && head_dim % 2 == 0 && q_cols % head_dim == 0,
                "Ops::attention_inputs: head_dim " << head_dim << " must be even and match the cache "
                                                   << cache.k.describe() << " and q " << q.describe());
  expect_rows_cols(qkv, batch.num_tokens, q_cols + 2 * kv_cols, "attention_inputs", "qkv");
  expect_rows_cols(q, batch.num_tokens, q_cols, "attention_inputs", "q");
  expect_numel(positions, batch.num_tokens, "attention_inputs", "positions", "one per token");
  expect_numel(batch.slot_mapping, batch.num_tokens, "attention_inputs", "batch.slot_mapping",
               "one per token");
  if (norm.kind != HeadNorm::None) {
    const int64_t qw = norm.kind == HeadNorm::PerHead ? head_dim : q_cols;
    const int64_t kw = norm.kind == HeadNorm::PerHead ? head_dim : kv_cols;
    expect(norm.q_weight, act, d, "attention_inputs", "norm.q_weight");
    expect(norm.k_weight, act, d, "attention_inputs", "norm.k_weight");
    expect_numel(norm.q_weight, qw, "attention_inputs", "norm.q_weight",
                 norm.kind == HeadNorm::PerHead ? "head_dim" : "q's columns");
    expect_numel(norm.k_weight, kw, "attention_inputs", "norm.k_weight",
                 norm.kind == HeadNorm::PerHead ? "head_dim" : "k's columns");
  }
  do_attention_inputs(qkv, norm, positions, head_dim, theta, cache, batch, q);
}

void Ops::kv_append(const Tensor& k, const Tensor& v, KvCache& cache, const BatchTensors& batch) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(k, act, d, "kv_append", "k");
  expect(v, act, d, "kv_append", "v");
  expect(batch.slot_mapping, DType::I32, d, "kv_append", "batch.slot_mapping");
  expect_cache(cache, act, d, batch.block_size, "kv_append");
  const int64_t width = cache.k.dim(2) * cache.k.dim(3);
  expect_rows_cols(k, batch.num_tokens, width, "kv_append", "k");
  expect_rows_cols(v, batch.num_tokens, width, "kv_append", "v");
  expect_numel(batch.slot_mapping, batch.num_tokens, "kv_append", "batch.slot_mapping",
               "one per token");
  do_kv_append(k, v, cache, batch);
}

void Ops::attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch,
                    int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                    Tensor& out) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(q, act, d, "attention", "q");
  expect(out, act, d, "attention", "out");
  expect_cache(cache, act, d, batch.block_size, "attention");
  MOETRON_CHECK(num_kv_heads > 0 && num_q_heads > 0 && num_q_heads % num_kv_heads == 0,
                "Ops::attention: " << num_q_heads << " query heads are not whole groups over "
                                   << num_kv_heads << " KV heads");
  MOETRON_CHECK(cache.k.dim(2) == num_kv_heads && cache.k.dim(3) == head_dim,
                "Ops::attention: cache.k " << cache.k.describe() << " does not hold "
                                           << num_kv_heads << " KV heads of head_dim "
                                           << head_dim);
  expect_rows_cols(q, batch.num_tokens, num_q_heads * head_dim, "attention", "q");
  expect_rows_cols(out, batch.num_tokens, num_q_heads * head_dim, "attention", "out");
  expect(batch.positions, DType::I32, d, "attention", "batch.positions");
  expect(batch.query_start, DType::I32, d, "attention", "batch.query_start");
  expect(batch.kv_lens, DType::I32, d, "attention", "batch.kv_lens");
  expect(batch.block_tables, DType::I32, d, "attention", "batch.block_tables");
  expect_numel(batch.positions, batch.num_tokens, "attention", "batch.positions", "one per token");
  expect_numel(batch.query_start, batch.num_seqs + 1, "attention", "batch.query_start",
               "num_seqs + 1");
  expect_numel(batch.kv_lens, batch.num_seqs, "attention", "batch.kv_lens", "one per sequence");
  expect_numel(batch.block_tables, batch.num_seqs * batch.max_blocks_per_seq, "attention",
               "batch.block_tables", "num_seqs * max_blocks_per_seq");
  do_attention(q, cache, batch, num_q_heads, num_kv_heads, head_dim, scale, out);
}

// ---- mixture of experts -------------------------------------------------------------------------

void Ops::router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids,
                      Tensor& weights, const Tensor& valid_tokens) {
  const Device d = device();
  expect_either(logits, activation_dtype(), DType::F32, d, "router_topk", "logits");
  expect(ids, DType::I32, d, "router_topk", "ids");
  expect(weights, DType::F32, d, "router_topk", "weights");
  MOETRON_CHECK(k >= 1 && k <= logits.cols(), "Ops::router_topk: top-k " << k << " outside [1, "
                                                                         << logits.cols()
                                                                         << "] (the experts)");
  expect_rows_cols(ids, logits.rows(), k, "router_topk", "ids");
  expect_rows_cols(weights, logits.rows(), k, "router_topk", "weights");
  if (valid_tokens.defined()) {
    expect(valid_tokens, DType::I32, d, "router_topk", "valid_tokens");
    expect_numel(valid_tokens, 1, "router_topk", "valid_tokens", "one count");
  }
  do_router_topk(logits, k, renormalize, ids, weights, valid_tokens);
}

void Ops::moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                      const ExpertWeights& experts, Tensor& out, int64_t expected_slots, Tensor* served) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(x, act, d, "moe_experts", "x");
  expect(ids, DType::I32, d, "moe_experts", "ids");
  expect(weights, DType::F32, d, "moe_experts", "weights");
  expect(out, act, d, "moe_experts", "out");
  MOETRON_CHECK(ids.shape == weights.shape && ids.rows() == x.rows(),
                "Ops::moe_experts: ids " << ids.describe() << " and weights "
                                         << weights.describe() << " must both be ["
                                         << x.rows() << " (rows of x), k]");
  expect_rows_cols(out, x.rows(), x.cols(), "moe_experts", "out");
  MOETRON_CHECK(expected_slots >= -1 && expected_slots <= ids.numel(),
                "Ops::moe_experts: expected_slots " << expected_slots << " outside [-1, " << ids.numel()
                                                    << "] (the slots of ids " << ids.describe() << ")");
  if (experts.num_local > 0) {
    const int64_t local = experts.num_local, hidden = x.cols();
    expect(experts.gate_up, act, d, "moe_experts", "experts.gate_up");
    expect(experts.down, act, d, "moe_experts", "experts.down");
    const int64_t inter = experts.down.cols();
    MOETRON_CHECK(experts.down.ndim() == 3 && experts.down.dim(0) == local &&
                      experts.down.dim(1) == hidden,
                  "Ops::moe_experts: experts.down " << experts.down.describe() << " is not ["
                                                    << local << ", " << hidden << ", I]");
    MOETRON_CHECK(experts.gate_up.ndim() == 3 && experts.gate_up.dim(0) == local &&
                      experts.gate_up.dim(1) == 2 * inter && experts.gate_up.dim(2) == hidden,
                  "Ops::moe_experts: experts.gate_up " << experts.gate_up.describe()
                                                       << " is not [" << local << ", "
                                                       << 2 * inter << ", " << hidden << "]");
  }
  if (served == nullptr) return do_moe_experts(x, ids, weights, experts, out, expected_slots);
  expect(*served, DType::I64, d, "moe_experts", "served");
  MOETRON_CHECK(served->ndim() == 1, "Ops::moe_experts: served " << served->describe() << " is not [E]");
  do_moe_experts_counted(x, ids, weights, experts, out, expected_slots, *served);
}

void Ops::swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down, Tensor& out) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(x, act, d, "swiglu_mlp", "x");
  expect(gate_up, act, d, "swiglu_mlp", "gate_up");
  expect(down, act, d, "swiglu_mlp", "down");
  expect(out, act, d, "swiglu_mlp", "out");
  const int64_t hidden = x.cols();
  MOETRON_CHECK(gate_up.ndim() == 2 && down.ndim() == 2 && gate_up.dim(0) == 2 * down.cols() &&
                    gate_up.cols() == hidden && down.dim(0) == hidden,
                "Ops::swiglu_mlp: gate_up " << gate_up.describe() << " and down "
                                            << down.describe() << " are not [2I, " << hidden
                                            << "] and [" << hidden << ", I]");
  expect_rows_cols(out, x.rows(), hidden, "swiglu_mlp", "out");
  do_swiglu_mlp(x, gate_up, down, out);
}

void Ops::add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w, const Tensor& y) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(acc, act, d, "add_sigmoid_gated", "acc");
  expect(x, act, d, "add_sigmoid_gated", "x");
  expect(gate_w, act, d, "add_sigmoid_gated", "gate_w");
  expect(y, act, d, "add_sigmoid_gated", "y");
  expect_rows_cols(acc, x.rows(), x.cols(), "add_sigmoid_gated", "acc");
  expect_rows_cols(y, x.rows(), x.cols(), "add_sigmoid_gated", "y");
  expect_numel(gate_w, x.cols(), "add_sigmoid_gated", "gate_w", "one per column of x");
  do_add_sigmoid_gated(acc, x, gate_w, y);
}

void Ops::gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(x, act, d, "gather_rows", "x");
  expect(rows, DType::I32, d, "gather_rows", "rows");
  expect(out, act, d, "gather_rows", "out");
  expect_rows_cols(out, rows.numel(), x.cols(), "gather_rows", "out");
  do_gather_rows(x, rows, out);
}

void Ops::scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows, const Tensor& scale) {
  const Device d = device();
  const DType act = activation_dtype();
  expect(acc, act, d, "scatter_add_rows", "acc");
  expect(x, act, d, "scatter_add_rows", "x");
  expect(rows, DType::I32, d, "scatter_add_rows", "rows");
  expect(scale, DType::F32, d, "scatter_add_rows", "scale");
  MOETRON_CHECK(x.cols() == acc.cols(), "Ops::scatter_add_rows: x " << x.describe()
                                                                    << " and acc "
                                                                    << acc.describe()
                                                                    << " differ in width");
  expect_numel(rows, x.rows(), "scatter_add_rows", "rows", "one per row of x");
  expect_numel(scale, x.rows(), "scatter_add_rows", "scale", "one per row of x");
  do_scatter_add_rows(acc, x, rows, scale);
}

void Ops::pack_dispatch(const Tensor& ids, const Tensor& weights, int64_t first, int64_t last,
                        int64_t expert_set_size, int64_t expert_shards, int64_t capacity,
                        Tensor& rows, Tensor& experts, Tensor& scales) {
  const Device d = device();
  expect(ids, DType::I32, d, "pack_dispatch", "ids");
  expect(weights, DType::F32, d, "pack_dispatch", "weights");
  expect(rows, DType::I32, d, "pack_dispatch", "rows");
  expect(experts, DType::I32, d, "pack_dispatch", "experts");
  expect(scales, DType::F32, d, "pack_dispatch", "scales");
  MOETRON_CHECK(ids.shape == weights.shape, "Ops::pack_dispatch: ids " << ids.describe()
                                                                       << " and weights "
                                                                       << weights.describe()
                                                                       << " differ in shape");
  const int64_t entries = rows.numel(), k = ids.numel() > 0 ? ids.cols() : 1;
  expect_numel(experts, entries, "pack_dispatch", "experts", "the size of rows");
  expect_numel(scales, entries, "pack_dispatch", "scales", "the size of rows");
  MOETRON_CHECK(expert_set_size > 0 && expert_shards > 0 && capacity >= 0 &&
                    (capacity == 0 ? entries == 0 : entries % capacity == 0),
                "Ops::pack_dispatch: " << entries << " entries are not whole destinations of "
                                       << "capacity " << capacity << " (expert_set_size "
                                       << expert_set_size << ", expert_shards " << expert_shards
                                       << ")");
  MOETRON_CHECK(0 <= first && first <= last && last * k <= ids.numel(),
                "Ops::pack_dispatch: tokens [" << first << ", " << last << ") outside ids "
                                               << ids.describe());
  do_pack_dispatch(ids, weights, first, last, expert_set_size, expert_shards, capacity, rows,
                   experts, scales);
}

void Ops::route_to_replicas(const Tensor& ids, const Tensor& table, Tensor& out) {
  const Device d = device();
  expect(ids, DType::I32, d, "route_to_replicas", "ids");
  expect(table, DType::I32, d, "route_to_replicas", "table");
  expect(out, DType::I32, d, "route_to_replicas", "out");
  MOETRON_CHECK(ids.shape == out.shape, "Ops::route_to_replicas: ids " << ids.describe() << " and out "
                                                                       << out.describe() << " differ in shape");
  MOETRON_CHECK(table.shape.size() == 2 && table.cols() >= 2,
                "Ops::route_to_replicas: table " << table.describe() << " is not [experts, 1 + copies]");
  do_route_to_replicas(ids, table, out);
}

void Ops::pack_from_peers(const Tensor& ids, const Tensor& tables, const Tensor& senders, int64_t tp_size,
                          int64_t expert_set_size, int64_t expert_shards, int64_t destination, int64_t capacity,
                          Tensor& rows, Tensor& experts) {
  const std::pair<const Tensor*, const char*> args[] = {
      {&ids, "ids"}, {&tables, "tables"}, {&senders, "senders"}, {&rows, "rows"}, {&experts, "experts"}};
  for (const auto& [t, name] : args) expect(*t, DType::I32, device(), "pack_from_peers", name);
  MOETRON_CHECK(tables.shape.size() == 3 && tables.dim(0) > 0 && tables.dim(2) >= 2,
                "Ops::pack_from_peers: tables " << tables.describe() << " is not [tables, experts, 1 + copies]");
  MOETRON_CHECK(senders.shape.size() == 2 && senders.cols() == 2,
                "Ops::pack_from_peers: senders " << senders.describe() << " is not [peers, 2]");
  const int64_t entries = senders.rows() * capacity;
  expect_numel(rows, entries, "pack_from_peers", "rows", "capacity entries per peer");
  expect_numel(experts, entries, "pack_from_peers", "experts", "capacity entries per peer");
  MOETRON_CHECK(tp_size > 0 && expert_set_size > 0 && expert_shards > 0 && destination >= 0 && capacity >= 0,
                "Ops::pack_from_peers: tp_size " << tp_size << ", expert_set_size " << expert_set_size
                                                 << ", expert_shards " << expert_shards << ", destination "
                                                 << destination << ", capacity " << capacity
                                                 << " (sizes must be positive, the others not negative)");
  do_pack_from_peers(ids, tables, senders, tp_size, expert_set_size, expert_shards, destination, capacity, rows,
                     experts);
}

void Ops::to_float(const Tensor& x, Tensor& out) {
  const Device d = device();
  expect_either(x, activation_dtype(), DType::F32, d, "to_float", "x");
  expect(out, DType::F32, d, "to_float", "out");
  expect_numel(out, x.numel(), "to_float", "out", "the size of x");
  do_to_float(x, out);
}

void Ops::argmax_rows(const Tensor& logits, Tensor& ids) {
  const Device d = device();
  expect(logits, DType::F32, d, "argmax_rows", "logits");
  expect(ids, DType::I32, d, "argmax_rows", "ids");
  expect_numel(ids, logits.rows(), "argmax_rows", "ids", "one per row of logits");
  do_argmax_rows(logits, ids);
}

void Ops::sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                      const std::vector<uint64_t>& steps, Tensor& ids) {
  const Device d = device();
  expect(logits, DType::F32, d, "sample_rows", "logits");
  expect(ids, DType::I32, d, "sample_rows", "ids");
  const int64_t rows = logits.rows();
  expect_numel(ids, rows, "sample_rows", "ids", "one per row of logits");
  MOETRON_CHECK(static_cast<int64_t>(params.size()) == rows &&
                    static_cast<int64_t>(steps.size()) == rows,
                "Ops::sample_rows: " << params.size() << " settings and " << steps.size()
                                     << " steps for logits " << logits.describe()
                                     << " (one each per row)");
  do_sample_rows(logits, params, steps, ids);
}

void Ops::accumulate_expert_counts(const Tensor& ids, Tensor& counts) {
  const Device d = device();
  expect(ids, DType::I32, d, "accumulate_expert_counts", "ids");
  expect(counts, DType::I64, d, "accumulate_expert_counts", "counts");
  do_accumulate_expert_counts(ids, counts);
}

void Ops::accumulate_routing(const Tensor& records, int64_t tokens, Tensor& counts,
                             Tensor& pairs) {
  const Device d = device();
  expect(records, DType::I32, d, "accumulate_routing", "records");
  expect(counts, DType::I64, d, "accumulate_routing", "counts");
  expect(pairs, DType::I64, d, "accumulate_routing", "pairs");
  MOETRON_CHECK(records.ndim() == 3 && tokens >= 0 && tokens <= records.dim(1),
                "Ops::accumulate_routing: records " << records.describe() << " must be [L, R, k] with "
                                                    << tokens << " tokens <= R");
  const int64_t layers = records.dim(0);
  MOETRON_CHECK(counts.ndim() == 2 && counts.dim(0) == layers,
                "Ops::accumulate_routing: counts " << counts.describe() << " must be [" << layers
                                                   << " (the records' layers), E]");
  const int64_t experts = counts.dim(1);
  MOETRON_CHECK(pairs.ndim() == 3 && pairs.dim(0) == layers && pairs.dim(1) == experts &&
                    pairs.dim(2) == experts,
                "Ops::accumulate_routing: pairs " << pairs.describe() << " must be [" << layers
                                                  << ", " << experts << ", " << experts << "]");
  if (tokens > 0 && layers > 0) do_accumulate_routing(records, tokens, counts, pairs);
}

void Ops::add_row_bias(Tensor& x, const Tensor& bias) {
  const Device d = device();
  expect(x, DType::F32, d, "add_row_bias", "x");
  expect(bias, DType::F32, d, "add_row_bias", "bias");
  MOETRON_CHECK(x.ndim() == 2, "Ops::add_row_bias: x " << x.describe() << " must be [R, C]");
  expect_numel(bias, x.cols(), "add_row_bias", "bias", "one per column of x");
  do_add_row_bias(x, bias);
}

}  // namespace moetron
