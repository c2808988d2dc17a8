// Ops: the operator set the model's forward is written against. CpuOps (float32 reference) and
// CudaOps (kernels/ + cuBLAS) implement it; the forward in src/model/ is written once.
//
// Conventions
// - Activations have the backend's activation dtype (F32 on the CPU, BF16 on CUDA) and are
//   2-D [rows, cols] unless stated. Weights are whatever upload_weight produced.
// - Linear weights are stored as Hugging Face stores them: W[out, in]; y = x W^T (+ b).
// - Temporaries come from temp(), a per-step arena: reset_temps() at the start of every step
//   frees them all at once, and the same sequence of calls gives the same addresses (so a CUDA
//   graph recorded over one step replays over the next).
// - Every call may run asynchronously; to_host() and sync() are the only points where the host
//   waits for the device.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/core/random_fill.hpp"
#include "moetron/core/tensor.hpp"
#include "moetron/sampling/sampling.hpp"  // SamplingParams

namespace moetron {

// One part of a generated weight (Ops::generate_weight): `rows` rows of `cols` values, row r
// holding elements [first + r * row_stride, + cols) of the tensor `fill` generates (a slice of a
// checkpoint tensor viewed as 2-D), or `rows` zero rows when `zeros` (padding).
struct GeneratedRows {
  RandomFill fill;
  int64_t first = 0, row_stride = 0, rows = 0, cols = 0;
  bool zeros = false;
};

// Where each token of a step goes in the paged KV cache and which tokens each sequence attends
// to. Built on the host by the engine, uploaded once per step by Ops::upload_batch.
struct BatchLayout {
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  int64_t max_blocks_per_seq = 0;   // row width of block_tables
  int64_t block_size = 0;           // tokens per KV-cache block
  std::vector<int32_t> token_ids;   // [T]
  std::vector<int32_t> positions;   // [T] position of each token in its sequence
  std::vector<int32_t> slot_mapping;  // [T] block * block_size + offset where its K/V go
  std::vector<int32_t> query_start;   // [S + 1] the step's tokens of sequence s: [qs[s], qs[s+1])
  std::vector<int32_t> kv_lens;       // [S] tokens in the cache for s after this step
  std::vector<int32_t> block_tables;  // [S * max_blocks_per_seq]
  std::vector<int32_t> logit_rows;    // [L] token rows whose logits are wanted (last of a seq)
  // Expert dispatch between replicas (dp > 1) with fixed-capacity buffers, sized for this many
  // tokens per replica: the most any replica of the stage has in this forward, agreed by all of
  // them. Nothing then waits for the host, so a recorded decode step can hold the dispatch.
  // 0: exchange the per-peer counts first (prefill, where a worst-case buffer would be large).
  int64_t dispatch_tokens = 0;
};

// The same, in backend memory (I32 tensors), as Ops kernels read it.
struct BatchTensors {
  int64_t num_tokens = 0, num_seqs = 0, max_blocks_per_seq = 0, block_size = 0;
  int64_t max_kv_len = 0;  // host-known bound, for kernels that size their work by it
  int64_t dispatch_tokens = 0;  // see BatchLayout
  Tensor token_ids, positions, slot_mapping, query_start, kv_lens, block_tables, logit_rows;
  // I32 [1]: how many of the tokens are real (the first ones). A recorded decode step pads its
  // batch to the bucket it was recorded for; the router sends the padding rows to no expert.
  // Undefined: every token is real.
  Tensor valid_tokens;
};

// BatchTensors' eight index arrays in one I32 buffer, so that a step uploads them in one copy:
// seven small copies cost a few microseconds each before the step's first kernel can start
// (perf/NOTES.md, seventeenth session). Each array starts at a multiple of kAlign elements.
class BatchArrays {
 public:
  static constexpr int64_t kAlign = 32;  // 128 bytes: whole lines for vector loads
  static constexpr size_t kArrays = 8;
  // Element counts in BatchTensors' order: token_ids, positions, slot_mapping, query_start,
  // kv_lens, block_tables (seqs x max_blocks_per_seq), logit_rows, valid_tokens (1).
  BatchArrays(int64_t tokens, int64_t seqs, int64_t max_blocks_per_seq, int64_t logit_rows);
  int64_t total() const { return offsets_.back(); }  // the buffer's elements
  // Points t's eight tensors (1-D views) into `buffer` (I32, total() elements).
  void bind(const Tensor& buffer, BatchTensors& t) const;
  // The eight host arrays (in the order above, each counts[i] elements) in the buffer's layout;
  // the padding between them is zero.
  std::vector<int32_t> pack(const std::array<const int32_t*, kArrays>& arrays) const;
  // Where each of the eight arrays starts in `packed` (total() elements, the buffer's layout), so
  // that a caller can fill them in place.
  std::array<int32_t*, kArrays> views(std::vector<int32_t>& packed) const;

 private:
  std::array<int64_t, kArrays> counts_{};
  std::array<int64_t, kArrays + 1> offsets_{};
};

// One layer's paged KV cache: [num_blocks, block_size, kv_heads, head_dim] each.
struct KvCache {
  Tensor k, v;
};

// QK-norm as the fused attention-input op applies it: none, one RMSNorm per head (weights
// [head_dim]), or one over the rank's whole q row and whole k row (weights [q_cols] and
// [kv_cols]; only where the rank holds the whole projection: across tp ranks the sum of squares
// must be all-reduced first, which the caller does).
enum class HeadNorm { None, PerHead, WholeRow };
struct QkNormSpec {
  HeadNorm kind = HeadNorm::None;
  Tensor q_weight, k_weight;
  float eps = 0.0f;
};

// Per-layer routed experts held by this rank: a contiguous range of experts, each possibly
// a shard (a slice of its intermediate dimension).
struct ExpertWeights {
  int64_t first_expert = 0;   // global index of local expert 0
  int64_t num_local = 0;
  Tensor gate_up;             // [num_local, 2 * I_shard, H]: gate rows, then up rows
  Tensor down;                // [num_local, H, I_shard]
};

// The non-virtual interface: every operator below is a public non-virtual method that checks
// its arguments against the contract written beside it (shapes, dtypes, devices and the index
// ranges the host knows; never device memory, never a sync), with messages that name the
// operator and the argument ("Ops::rmsnorm: w has 512 elements, x has rows of 1024"), the same
// for every backend; it then calls the backend's protected virtual do_<name>. A backend checks
// only its own limits (e.g. the head sizes its attention kernel has) in its do_ methods. The
// checks are a few integer comparisons per call; a message is formatted only on failure.
// A temporary's bytes in a step arena: its own rounded up to kTempAlignment (CudaOps::temp
// places temporaries so; CpuOps counts its own the same way for cpu_peak_temp_bytes).
constexpr size_t kTempAlignment = 256;
inline size_t temp_arena_bytes(size_t nbytes) {
  return (nbytes + kTempAlignment - 1) / kTempAlignment * kTempAlignment;
}

class Ops {
 public:
  virtual ~Ops() = default;
  virtual Device device() const = 0;
  virtual DType activation_dtype() const = 0;
  virtual std::string name() const = 0;
  // The kernel choices that change what an operator costs without changing what it computes
  // (set from MOETRON_* environment variables for A/B measurements), as "name=value,..." in a
  // fixed order; "" where the backend has none (CPU). Profiles record it, so that predictions
  // use only the kernels they timed, and results files, so that a measurement names its kernels.
  virtual std::string kernel_settings() const { return ""; }

  // ---- memory ----
  // Converts a host tensor (F32/F16/BF16, read-only) into the backend's weight format.
  virtual Tensor upload_weight(const Tensor& host) = 0;
  // Host memory to stage weights in on their way to upload_weight; may be called from any
  // thread. Page-locked on CUDA, so that the upload is an asynchronous DMA (upload_weight keeps
  // the memory alive until it is done); plain heap memory elsewhere.
  virtual Tensor staging_tensor(DType dtype, std::vector<int64_t> shape) {
    return host_tensor(dtype, std::move(shape));
  }
  // Waits for the uploads under way and frees the staging memory kept for reuse.
  virtual void finish_weight_uploads() {}
  // A weight of `shape` made of `parts` in row order by the deterministic generator
  // (core/random_fill.hpp), each value rounded to source_dtype first: what upload_weight gives
  // for a host tensor of source_dtype holding them (dummy weights). The default generates on
  // the host and uploads; CUDA generates on the device, with no host copy at all.
  virtual Tensor generate_weight(const std::vector<GeneratedRows>& parts, DType source_dtype,
                                 std::vector<int64_t> shape);
  virtual Tensor alloc(DType dtype, std::vector<int64_t> shape) = 0;  // lives until freed
  virtual Tensor temp(DType dtype, std::vector<int64_t> shape) = 0;   // lives until reset_temps
  virtual void reset_temps() = 0;
  // Temporaries made after temp_mark() may be released together with temp_release(mark), so
  // one layer's scratch is reused by the next. Backends without it keep them until reset.
  virtual size_t temp_mark() { return 0; }
  virtual void temp_release(size_t /*mark*/) {}
  // Resumes the arena at `mark` (a temp_mark() taken when a recording ended) after replay():
  // the recording's temporaries below it hold its outputs (the logits), so temporaries made
  // next must come after them. Backends that do not record ignore it.
  virtual void temp_resume(size_t /*mark*/) {}
  void copy_from_host(Tensor& dst, const void* src);      // dst.nbytes() bytes
  void to_host(const Tensor& src, void* dst);             // waits for the device
  void copy(const Tensor& src, Tensor& dst);              // same size, same dtype
  // dst[r, col : col + width] = src[r, 0 : width] for every row r (width <= src.cols()): a
  // column block of a wider matrix (same dtype and rows; e.g. the real tokens of a tp rank's
  // padded vocabulary slice of the logits).
  void copy_columns(const Tensor& src, int64_t width, Tensor& dst, int64_t col);
  // dst [R, width] = columns [col, col + width) of src [R, C] (the reverse of copy_columns).
  void take_columns(const Tensor& src, int64_t col, int64_t width, Tensor& dst);
  void fill_zero(Tensor& t);
  virtual void sync() = 0;
  // Device memory still free for the KV cache, or -1 where the backend does not know (CPU).
  virtual int64_t free_memory_bytes() { return -1; }
  BatchTensors upload_batch(const BatchLayout& b);                     // temp() + copy_from_host

  // ---- dense math ----
  // Activations (x, out, residual, ...) and weights have activation_dtype(); all on device().
  // out[t] = table[ids[t]]; ids are I32 [T]; table [V, H]; out [T, H].
  void embed(const Tensor& ids, const Tensor& table, Tensor& out);
  // out = rmsnorm(x) * w over the last dimension (x may be viewed as [R, C] with C = w size).
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out);
  // residual += delta; out = rmsnorm(residual) * w. Fused: one pass over the residual stream.
  void add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps, Tensor& out);
  // sumsq[r] = sum_c x[r, c]^2 (F32 [R]); used when a norm spans tensor-parallel shards.
  void row_sumsq(const Tensor& x, Tensor& sumsq);
  // out = x * rsqrt(sumsq / total_cols + eps) * w, w being this shard's slice of the weight.
  void rmsnorm_with_sumsq(const Tensor& x, const Tensor& sumsq, int64_t total_cols,
                          const Tensor& w, float eps, Tensor& out);
  // out [T, N] = x [T, K] W[N, K]^T (+ bias[N] when defined). out: activation dtype or F32.
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out);
  void add_inplace(Tensor& acc, const Tensor& x);  // acc += x (same size)
  void clamp_inplace(Tensor& x, float limit);      // x = clamp(x, -limit, limit)
  // Rotary embedding (rotate-half / NeoX layout) on q [T, nq * hd] and k [T, nk * hd] in place;
  // positions I32 [T].
  void rope(Tensor& q, Tensor& k, const Tensor& positions, int64_t head_dim, double theta);

  // ---- attention over the paged cache ----
  // The attention inputs from one QKV projection qkv [T, q_cols + 2 kv_cols] (q, k, v columns
  // in that order): QK-norm (norm), RoPE on q and k (as rope()), k and v written into the cache
  // at slot_mapping (as kv_append()), q written to q [T, q_cols]. The default composes the
  // single operators; a backend may fuse them (one kernel instead of six a layer in decode).
  void attention_inputs(const Tensor& qkv, const QkNormSpec& norm, const Tensor& positions,
                        int64_t head_dim, double theta, KvCache& cache, const BatchTensors& batch,
                        Tensor& q);
  // Writes k, v [T, nk * hd] into the cache at slot_mapping.
  void kv_append(const Tensor& k, const Tensor& v, KvCache& cache, const BatchTensors& batch);
  // Causal attention of each sequence's new queries over its cached keys/values (GQA: query
  // head h reads kv head h / (nq / nk)). q [T, nq * hd], out [T, nq * hd].
  void attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch,
                 int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                 Tensor& out);

  // ---- mixture of experts ----
  // Softmax over E router logits [T, E] (activation dtype or F32; in float32), top-k, optional
  // renormalisation. ids I32 [T, k], weights F32 [T, k], in descending weight order. With
  // valid_tokens (I32 [1], BatchTensors'), rows at or past its value are padding: ids -1 (no
  // expert's) and weights 0.
  void router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids,
                   Tensor& weights, const Tensor& valid_tokens = Tensor{});
  // out [T, H] = sum over slots (t, j) whose expert is local of
  //   weights[t, j] * down_e(silu(gate_e x_t) * up_e x_t); other slots contribute nothing.
  // ids I32 and weights F32 [T, k]. The grouped path: count per expert, permute, grouped GEMMs,
  // weighted un-permute. expected_slots: how many slots are expected to name a local expert, where
  // most of ids is padding (-1: a decode dispatch's fixed-capacity buffers); -1 for all of them.
  // Only the kernel choice (rows an expert) reads it: the result is the same for any value.
  // served (I64 [E], optional): also counts every id in [0, E) into it, as
  // accumulate_expert_counts does (a backend may do it inside the routing, without a launch).
  void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                   const ExpertWeights& experts, Tensor& out, int64_t expected_slots = -1,
                   Tensor* served = nullptr);
  // out [T, H] = down(silu(gate x) * up x) with gate_up [2I, H], down [H, I] (dense MLP,
  // shared expert).
  void swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down, Tensor& out);
  // acc [T, H] += sigmoid(x [T, H] . gate_w [1, H]) * y [T, H]   (qwen2_moe shared expert)
  void add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w, const Tensor& y);
  // out[i] = x[rows[i]] (rows I32 [n]); rows[i] = -1 gives a zero row.
  void gather_rows(const Tensor& x, const Tensor& rows, Tensor& out);
  // acc[rows[i]] += scale[i] * x[i] (rows I32 [n], scale F32 [n]); rows may repeat; rows[i] = -1
  // adds nothing.
  void scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows, const Tensor& scale);
  // Expert dispatch into fixed-capacity buffers, on the device. The slots (t, j) of tokens t in
  // [first, last) of ids/weights [T, k] go, in (t, j) order, to every destination
  // d = (ids[t, j] / expert_set_size) * expert_shards + shard (shard < expert_shards); each of
  // the D destinations gets `capacity` entries of rows I32 [D * capacity] (the token row),
  // experts I32 [D * capacity, 1] (the global expert) and scales F32 [D * capacity] (the
  // routing weight). Entries past a destination's count are -1, -1 and 0. The caller sizes
  // capacity so that nothing overflows (top-k experts are distinct). The default goes through
  // the host; a backend may keep it on the device (a CUDA graph can then record it).
  void pack_dispatch(const Tensor& ids, const Tensor& weights, int64_t first, int64_t last,
                     int64_t expert_set_size, int64_t expert_shards, int64_t capacity,
                     Tensor& rows, Tensor& experts, Tensor& scales);
  // Redundant experts (parallel/expert_replicas.hpp): out[t, j] = table[e, 1 + t % table[e, 0]]
  // for e = ids[t, j] (ids, out I32 [T, k]; table I32 [E, C], row e = expert e's copies n, then
  // their slot ids): token t's slot of expert e goes to copy t mod n, the home copy first.
  // Ids outside [0, E) give -1. The default goes through the host; a backend may keep it on the
  // device (a CUDA graph can then record it).
  void route_to_replicas(const Tensor& ids, const Tensor& table, Tensor& out);
  // Rank emulation with redundant experts: what each of P peers sends one destination, in one
  // call whatever P (per peer it would be route_to_replicas, pack_dispatch and copies). Peer p
  // routes ids I32 [T, k] (in [0, E)) with copy table tables[senders[p, 0]] (tables I32 [U, E, C],
  // each as route_to_replicas reads it) and packs, as pack_dispatch, its tp rank's share
  // [T * r / tp_size, T * (r + 1) / tp_size) of the tokens, r = senders[p, 1] (senders I32
  // [P, 2], indices in range: device memory, not checked). Block p of rows I32 [P * capacity]
  // and experts I32 [P * capacity, 1] gets the `capacity` entries pack_dispatch gives
  // `destination` (-1 past its count). The default goes through the host.
  void pack_from_peers(const Tensor& ids, const Tensor& tables, const Tensor& senders, int64_t tp_size,
                       int64_t expert_set_size, int64_t expert_shards, int64_t destination, int64_t capacity,
                       Tensor& rows, Tensor& experts);
  // Converts activations (or F32) to F32 (logits for sampling, results files). out F32, same
  // size.
  void to_float(const Tensor& x, Tensor& out);
  // ids I32 [R] = argmax over each row of logits F32 [R, V] (ties: the lowest index), or
  // kNonFiniteToken (-1) for a row holding a NaN or +Inf (sampling/non_finite_logits.hpp). The
  // default goes through the host; a backend may keep it on the device (greedy decoding).
  void argmax_rows(const Tensor& logits, Tensor& ids);
  // ids I32 [R] = sample_token(row r of logits F32 [R, V], params[r], steps[r]) (sampling/
  // sampling.hpp; temperature 0 is the argmax, as argmax_rows; -1 for a NaN or +Inf row). The default goes through the
  // host; a backend may sample on the device so that only the ids cross to the host.
  void sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                   const std::vector<uint64_t>& steps, Tensor& ids);

  // ---- recording (CUDA graphs) ----
  // A backend that can record the work enqueued between begin_recording() and end_recording()
  // and replay it says so here. Nothing recorded may wait for the host. Recordings keep the
  // addresses they saw: inputs are changed by writing into the same tensors before replay().
  virtual bool can_record() const { return false; }
  virtual void begin_recording() {}
  virtual int end_recording() { return -1; }  // an id for replay()
  virtual void replay(int /*recording*/) {}
  // How many operations (graph nodes: kernels, copies, memsets) a recording replays: the launch
  // count the predictor's per-kernel gap multiplies (0 where nothing is recorded).
  virtual int64_t recording_nodes(int /*recording*/) const { return 0; }

  // counts I64 [E] += number of slots in ids (I32 [T, k]) routed to each expert. The default
  // goes through the host; a backend may count on the device (it must not sync the host, so
  // that a CUDA graph can record it).
  void accumulate_expert_counts(const Tensor& ids, Tensor& counts);
  // The routing records of every layer at once (one launch a step, not two a layer): for each
  // layer l and the first `tokens` rows t of records (I32 [L, R, k]), counts I64 [L, E] += one
  // at ids[l, t, j] for each j, and pairs I64 [L, E, E] += one at (ids[l, t, j], ids[l, t, m])
  // for every j, m < k: symmetric, the off-diagonal (a, b) counts the tokens that chose both a
  // and b, the diagonal equals counts. Ids outside [0, E) (padding, layers without experts:
  // -1) are not counted. The default goes through the host; a backend may count on the device
  // (without a sync, so it can be recorded).
  void accumulate_routing(const Tensor& records, int64_t tokens, Tensor& counts, Tensor& pairs);
  // x F32 [R, C] += bias F32 [C] on every row (the per-expert router bias of --routing-skew).
  void add_row_bias(Tensor& x, const Tensor& bias);

  // ---- timing a section of the enqueued work (a rank's expert compute) ----
  // The time of the work enqueued between begin_timed_section() and end_timed_section(),
  // summed over every such pair since the backend was made. Never waits for the device while
  // timing; timed_section_seconds() may. A backend may leave out sections it records into a
  // graph (CUDA: replayed decode steps are not timed). NaN where a backend cannot time.
  virtual void begin_timed_section() {}
  virtual void end_timed_section() {}
  virtual double timed_section_seconds();

 protected:
  // The backends' implementations, called after the contract's checks passed (see above).
  virtual void do_copy_from_host(Tensor& dst, const void* src) = 0;
  virtual void do_to_host(const Tensor& src, void* dst) = 0;
  virtual void do_copy(const Tensor& src, Tensor& dst) = 0;
  virtual void do_copy_columns(const Tensor& src, int64_t width, Tensor& dst, int64_t col) = 0;
  virtual void do_take_columns(const Tensor& src, int64_t col, int64_t width, Tensor& dst) = 0;
  virtual void do_attention_inputs(const Tensor& qkv, const QkNormSpec& norm,
                                   const Tensor& positions, int64_t head_dim, double theta,
                                   KvCache& cache, const BatchTensors& batch, Tensor& q);
  virtual void do_fill_zero(Tensor& t) = 0;
  virtual void do_embed(const Tensor& ids, const Tensor& table, Tensor& out) = 0;
  virtual void do_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) = 0;
  virtual void do_add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                              Tensor& out) = 0;
  virtual void do_row_sumsq(const Tensor& x, Tensor& sumsq) = 0;
  virtual void do_rmsnorm_with_sumsq(const Tensor& x, const Tensor& sumsq, int64_t total_cols,
                                     const Tensor& w, float eps, Tensor& out) = 0;
  virtual void do_linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) = 0;
  virtual void do_add_inplace(Tensor& acc, const Tensor& x) = 0;
  virtual void do_clamp_inplace(Tensor& x, float limit) = 0;
  virtual void do_rope(Tensor& q, Tensor& k, const Tensor& positions, int64_t head_dim,
                       double theta) = 0;
  virtual void do_kv_append(const Tensor& k, const Tensor& v, KvCache& cache,
                            const BatchTensors& batch) = 0;
  virtual void do_attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch,
                            int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim,
                            float scale, Tensor& out) = 0;
  virtual void do_router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids,
                              Tensor& weights, const Tensor& valid_tokens) = 0;
  virtual void do_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                              const ExpertWeights& experts, Tensor& out, int64_t expected_slots) = 0;
  // moe_experts with served: by default the count, then do_moe_experts.
  virtual void do_moe_experts_counted(const Tensor& x, const Tensor& ids, const Tensor& weights,
                                      const ExpertWeights& experts, Tensor& out, int64_t expected_slots,
                                      Tensor& served);
  virtual void do_swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down,
                             Tensor& out) = 0;
  virtual void do_add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w,
                                    const Tensor& y) = 0;
  virtual void do_gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) = 0;
  virtual void do_scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows,
                                   const Tensor& scale) = 0;
  virtual void do_to_float(const Tensor& x, Tensor& out) = 0;
  // Defaults through the host (ops_defaults.cpp); a backend may override them.
  virtual void do_pack_dispatch(const Tensor& ids, const Tensor& weights, int64_t first,
                                int64_t last, int64_t expert_set_size, int64_t expert_shards,
                                int64_t capacity, Tensor& rows, Tensor& experts, Tensor& scales);
  virtual void do_route_to_replicas(const Tensor& ids, const Tensor& table, Tensor& out);
  virtual void do_pack_from_peers(const Tensor& ids, const Tensor& tables, const Tensor& senders,
                                  int64_t tp_size, int64_t expert_set_size, int64_t expert_shards,
                                  int64_t destination, int64_t capacity, Tensor& rows, Tensor& experts);
  virtual void do_argmax_rows(const Tensor& logits, Tensor& ids);
  virtual void do_sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                              const std::vector<uint64_t>& steps, Tensor& ids);
  virtual void do_accumulate_expert_counts(const Tensor& ids, Tensor& counts);
  virtual void do_accumulate_routing(const Tensor& records, int64_t tokens, Tensor& counts,
                                     Tensor& pairs);
  virtual void do_add_row_bias(Tensor& x, const Tensor& bias) = 0;
};

}  // namespace moetron
