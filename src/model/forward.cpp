#include "moetron/model/forward.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "moetron/backend/expert_dispatch.hpp"
#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/range.hpp"

namespace moetron {


ModelForward::ModelForward(const ForwardContext& ctx, int64_t kv_blocks, int64_t block_size)
    : ctx_(ctx) {
  MOETRON_ASSERT(ctx.config && ctx.ops && ctx.shard && ctx.weights && ctx.tp);
  const ModelConfig& c = *ctx.config;
  Ops& ops = *ctx.ops;
  for (size_t i = 0; i < ctx.weights->layers.size(); ++i) {
    KvCache cache;
    std::vector<int64_t> shape = {kv_blocks, block_size, ctx.shard->kv_head_count, c.head_dim};
    cache.k = ops.alloc(ops.activation_dtype(), shape);
    cache.v = ops.alloc(ops.activation_dtype(), shape);
    // Unwritten slots are never read, but zeros keep a stray read from turning into NaN.
    ops.fill_zero(cache.k);
    ops.fill_zero(cache.v);
    kv_bytes_ += cache.k.nbytes() + cache.v.nbytes();
    caches_.push_back(std::move(cache));
  }
  // The counts of every layer in one tensor each, so that a snapshot (a routing window's end,
  // possibly every step) is one copy to the host; each layer counts into its own view.
  const int64_t layers = static_cast<int64_t>(ctx.weights->layers.size());
  const int64_t experts = std::max<int64_t>(c.num_experts, 1);
  expert_counts_all_ = ops.alloc(DType::I64, {layers, experts});
  ops.fill_zero(expert_counts_all_);
  coactivation_all_ = ops.alloc(DType::I64, {layers, experts, experts});
  ops.fill_zero(coactivation_all_);
  // Each step's routing is recorded here (the router writes its ids in place) and counted
  // after the step, every layer in one call, over the real tokens only (a CUDA graph replays
  // padded batches). Layers without experts keep -1, which is not counted.
  const int64_t record_rows = std::max<int64_t>(ctx.max_tokens, 1), k = std::max<int64_t>(c.top_k, 1);
  routing_all_ = ops.alloc(DType::I32, {layers, record_rows, k});
  const std::vector<int32_t> none(static_cast<size_t>(routing_all_.numel()), -1);
  ops.copy_from_host(routing_all_, none.data());
  for (int64_t i = 0; i < layers; ++i)
    routing_.push_back(routing_all_.slice_rows(i, 1).reshape({record_rows, k}));
  // Indexed by the ids the experts are given: slot ids with redundant experts.
  served_ = ops.alloc(DType::I64, {std::max<int64_t>(expert_id_count(), 1)});
  ops.fill_zero(served_);
  if (ctx.stage != nullptr) {
    // The weights of every entry a dispatch can receive (ones: the routing weight is applied
    // where the token lives), made once so that a recording can read them.
    const int64_t entries = ctx.stage->size() * dispatch_capacity(std::max<int64_t>(ctx.max_tokens, 1));
    std::vector<float> ones(static_cast<size_t>(entries), 1.0f);
    ones_ = ops.alloc(DType::F32, {entries});
    ops.copy_from_host(ones_, ones.data());
  }
}

void ModelForward::count_routing(int64_t num_tokens) {
  if (!ctx_.count_experts || num_tokens == 0) return;
  ctx_.ops->accumulate_routing(routing_all_, num_tokens, expert_counts_all_, coactivation_all_);
}

// What this rank's experts computed: every slot given to moe_experts, counted on the device
// inside the forward (a recorded step's padding rows route to no expert and are not counted),
// and the time of those calls.
void ModelForward::run_experts(const LayerWeights& w, const Tensor& x, const Tensor& ids,
                               const Tensor& weights, int64_t expected_slots, Tensor& out) {
  Ops& ops = *ctx_.ops;
  ops.begin_timed_section();
  ops.moe_experts(x, ids, weights, w.experts, out, expected_slots, &served_);
  ops.end_timed_section();
}

Tensor ModelForward::embed(const BatchTensors& batch) {
  Ops& ops = *ctx_.ops;
  Tensor out = ops.temp(ops.activation_dtype(), {batch.num_tokens, ctx_.config->hidden_size});
  ops.embed(batch.token_ids, ctx_.weights->embed, out);
  return out;
}

void ModelForward::allreduce_tp(Tensor& t) {
  if (ctx_.tp->size() > 1) ctx_.tp->allreduce_sum(t);
}

void ModelForward::run_layers(Tensor& hidden, const BatchTensors& batch) {
  const ModelConfig& c = *ctx_.config;
  Ops& ops = *ctx_.ops;
  const auto& layers = ctx_.weights->layers;
  if (layers.empty()) return;
  const int64_t T = batch.num_tokens, H = c.hidden_size;
  const DType act = ops.activation_dtype();
  const float eps = static_cast<float>(c.rms_norm_eps);
  Tensor h = ops.temp(act, {T, H});
  Tensor delta = ops.temp(act, {T, H});
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerWeights& w = layers[i];
    const size_t mark = ops.temp_mark();  // this layer's scratch is reused by the next
    // The residual add of the previous block is fused into this norm.
    if (i == 0) {
      ops.rmsnorm(hidden, w.input_norm, eps, h);
    } else {
      ops.add_rmsnorm(hidden, delta, w.input_norm, eps, h);
    }
    attention_block(w, i, h, batch, delta);
    ops.add_rmsnorm(hidden, delta, w.post_attention_norm, eps, h);
    mlp_block(w, i, h, batch, delta);
    ops.temp_release(mark);
  }
  ops.add_inplace(hidden, delta);
}

// QK-norm over a whole projection whose heads several tp ranks hold: the squares are summed
// over the group. A kv head replicated on r ranks is counted r times, so the width is scaled.
Tensor ModelForward::qk_norm_across_tp(const Tensor& x, const Tensor& w, int64_t total_cols,
                                       int64_t replication) {
  Ops& ops = *ctx_.ops;
  Tensor out = ops.temp(x.dtype, x.shape);
  Tensor sumsq = ops.temp(DType::F32, {x.rows()});
  ops.row_sumsq(x, sumsq);
  ctx_.tp->allreduce_sum(sumsq);
  ops.rmsnorm_with_sumsq(x, sumsq, total_cols * replication, w,
                         static_cast<float>(ctx_.config->rms_norm_eps), out);
  return out;
}

void ModelForward::attention_block(const LayerWeights& w, size_t local_layer, const Tensor& h,
                                   const BatchTensors& batch, Tensor& out) {
  const ModelConfig& c = *ctx_.config;
  const ShardSpec& s = *ctx_.shard;
  Ops& ops = *ctx_.ops;
  const int64_t T = batch.num_tokens;
  const DType act = ops.activation_dtype();
  const int64_t q_cols = s.q_head_count * c.head_dim, kv_cols = s.kv_head_count * c.head_dim;
  const AttentionWeights& a = w.attn;
  auto bias = [](const Tensor& b) { return b.defined() ? &b : nullptr; };

  Tensor qkv = ops.temp(act, {T, q_cols + 2 * kv_cols});
  ops.linear(h, a.qkv, bias(a.qkv_bias), qkv);
  if (c.clip_qkv > 0) ops.clamp_inplace(qkv, static_cast<float>(c.clip_qkv));
  QkNormSpec norm;
  if (c.qk_norm != QkNorm::None) {
    norm.kind = c.qk_norm == QkNorm::PerHead ? HeadNorm::PerHead : HeadNorm::WholeRow;
    norm.q_weight = a.q_norm;
    norm.k_weight = a.k_norm;
    norm.eps = static_cast<float>(c.rms_norm_eps);
    if (norm.kind == HeadNorm::WholeRow && ctx_.tp->size() > 1) {
      // The norm spans heads held by other tp ranks: normed here with the group's sums, then
      // put back into qkv for the op (which then applies none).
      Tensor q = ops.temp(act, {T, q_cols}), k = ops.temp(act, {T, kv_cols});
      ops.take_columns(qkv, 0, q_cols, q);
      ops.take_columns(qkv, q_cols, kv_cols, k);
      ops.copy_columns(qk_norm_across_tp(q, a.q_norm, c.q_width(), 1), q_cols, qkv, 0);
      ops.copy_columns(qk_norm_across_tp(k, a.k_norm, c.kv_width(), s.kv_replication), kv_cols,
                       qkv, q_cols);
      norm = QkNormSpec{};
    }
  }
  Tensor q = ops.temp(act, {T, q_cols});
  ops.attention_inputs(qkv, norm, batch.positions, c.head_dim, c.rope_theta, caches_[local_layer],
                       batch, q);
  Tensor o = ops.temp(act, {T, q_cols});
  ops.attention(q, caches_[local_layer], batch, s.q_head_count, s.kv_head_count, c.head_dim,
                static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim))), o);
  // Row-parallel: each tp rank holds a slice of o's columns; one rank adds the bias.
  ops.linear(o, a.o, s.holds_o_bias ? bias(a.o_bias) : nullptr, out);
  allreduce_tp(out);
}

void ModelForward::mlp_block(const LayerWeights& w, size_t local_layer, const Tensor& h,
                             const BatchTensors& batch, Tensor& out) {
  const ModelConfig& c = *ctx_.config;
  Ops& ops = *ctx_.ops;
  const int64_t T = h.rows();
  const DType act = ops.activation_dtype();
  if (!w.is_moe) {
    ops.swiglu_mlp(h, w.dense.gate_up, w.dense.down, out);
    allreduce_tp(out);
    return;
  }
  // Router logits in float32: rounding them to bf16 can swap near-equal experts.
  Tensor logits = ops.temp(DType::F32, {T, c.num_experts});
  ops.linear(h, w.router, nullptr, logits);
  if (w.router_bias.defined()) ops.add_row_bias(logits, w.router_bias);
  // Where the routing is counted, the router writes straight into this layer's record.
  MOETRON_ASSERT(!ctx_.count_experts || T <= routing_[local_layer].dim(0));
  Tensor ids = ctx_.count_experts ? routing_[local_layer].slice_rows(0, T)
                                  : ops.temp(DType::I32, {T, c.top_k});
  Tensor weights = ops.temp(DType::F32, {T, c.top_k});
  // A recorded step's padding rows (past batch.valid_tokens) go to no expert: they would all pick
  // the same experts (one token at one position) and pile onto their tiles.
  ops.router_topk(logits, c.top_k, c.norm_topk_prob, ids, weights, batch.valid_tokens);
  dispatch_experts(w, local_layer, h, ids, weights, batch.dispatch_tokens, out);
  if (w.shared.gate_up.defined()) {
    Tensor shared = ops.temp(act, {T, c.hidden_size});
    ops.swiglu_mlp(h, w.shared.gate_up, w.shared.down, shared);
    if (w.shared_gate.defined()) {
      ops.add_sigmoid_gated(out, h, w.shared_gate, shared);
    } else {
      ops.add_inplace(out, shared);
    }
  }
  allreduce_tp(out);
}

// With one replica per stage every rank holds every token and runs its own experts on them.
// Otherwise several data-parallel replicas share this stage's experts: each tp rank of a replica sends
// its share of the replica's tokens to every rank holding (a slice of) each chosen expert, the
// owners run their experts on what arrives, and the results travel back to be weighted and
// summed. Rows of tokens this rank did not send stay zero: the tp all-reduce that follows
// completes them from the replica's other tp ranks. Where the step's tokens per replica are
// agreed (batch.dispatch_tokens), the buffers have a fixed capacity and nothing waits for the
// host; otherwise the routing goes through the host and the counts are exchanged first.
// With redundant experts, each slot first goes to one copy of its expert (route_to_copies).
void ModelForward::dispatch_experts(const LayerWeights& w, size_t local_layer, const Tensor& h,
                                    const Tensor& ids, const Tensor& weights, int64_t dispatch_tokens,
                                    Tensor& out) {
  const Tensor slots = route_to_copies(local_layer, ids);
  if (ctx_.stage == nullptr) {
    // Every slot of the replica comes here, but only those of this rank's experts are its work:
    // with ep > 1 the kernels must be picked by those (Mixtral at ep = 8: 16 rows of the 128
    // slots an emulated rank's one expert gets, which picked the 64-row tiles over the GEMVs).
    const int64_t all = slots.numel(), mine = expected_set_slots(all, ctx_.expert_set_size, expert_id_count());
    run_experts(w, h, slots, weights, mine < all ? mine : -1, out);
    return;
  }
  ExpertRoute route = dispatch_tokens > 0 ? route_fixed(slots, weights, dispatch_tokens)
                                          : route_with_counts(slots, weights);
  if (!ctx_.peer_tables.empty()) route_as_peers(local_layer, ids, dispatch_tokens, route);
  exchange_with_experts(w, h, route, out);
}

// The slot id of the copy of its expert that each slot of `ids` goes to (ids themselves without
// redundant experts): the same device op on every path, so a decode graph records it.
Tensor ModelForward::route_to_copies(size_t local_layer, const Tensor& ids) {
  if (ctx_.replica_tables.empty()) return ids;
  Tensor slots = ctx_.ops->temp(DType::I32, ids.shape);
  ctx_.ops->route_to_replicas(ids, ctx_.replica_tables.at(local_layer), slots);
  return slots;
}

// Without redundant experts the experts' ids are the E experts and a rank's are its own;
// with them the ids are slot ids, expert_set_size of them per set, and a rank's are its set's.
bool ModelForward::uses_slot_ids() const { return !ctx_.replica_tables.empty() && ctx_.shard->expert_count > 0; }

int64_t ModelForward::expert_id_count() const {
  const ShardSpec& s = *ctx_.shard;
  return uses_slot_ids() ? ctx_.config->num_experts / s.expert_count * ctx_.expert_set_size : ctx_.config->num_experts;
}

Range ModelForward::my_expert_ids() const {
  const ShardSpec& s = *ctx_.shard;
  if (!uses_slot_ids()) return s.experts();
  const int64_t set = s.expert_begin / s.expert_count, width = ctx_.expert_set_size;
  return {set * width, (set + 1) * width};
}

// This tp rank's share [first, last) of the replica's T tokens (Ops::pack_from_peers takes an
// emulated peer's the same way).
std::pair<int64_t, int64_t> ModelForward::dispatch_share(int64_t tokens) const {
  const int64_t tp_rank = ctx_.tp->rank(), tp_size = ctx_.tp->size();
  return {tokens * tp_rank / tp_size, tokens * (tp_rank + 1) / tp_size};
}

// Entries per destination that hold any routing of `tokens` tokens per replica: a tp rank
// sends at most ceil(tokens / tp) tokens, each to one destination at most min(k, set size)
// times (a token's top-k experts are distinct).
int64_t ModelForward::dispatch_capacity(int64_t tokens) const {
  const int64_t tp = ctx_.tp->size();
  return (tokens + tp - 1) / tp * std::min<int64_t>(ctx_.config->top_k, ctx_.expert_set_size);
}

ModelForward::ExpertRoute ModelForward::route_with_counts(const Tensor& ids, const Tensor& weights) {
  const ModelConfig& c = *ctx_.config;
  Ops& ops = *ctx_.ops;
  const int64_t T = ids.rows(), K = c.top_k;
  const int group = ctx_.stage->size();
  const auto [first, last] = dispatch_share(T);

  std::vector<int32_t> host_ids(static_cast<size_t>(T * K));
  std::vector<float> host_w(static_cast<size_t>(T * K));
  if (T > 0) {
    ops.to_host(ids, host_ids.data());
    ops.to_host(weights, host_w.data());
  }
  const std::vector<DispatchEntries> to = entries_by_destination(
      host_ids.data(), host_w.data(), K, first, last, ctx_.expert_set_size, ctx_.expert_shards, group);
  ExpertRoute route;
  route.send_counts.resize(group);
  std::vector<int32_t> send_rows, send_experts;
  std::vector<float> send_scales;
  for (int d = 0; d < group; ++d) {
    route.send_counts[d] = static_cast<int64_t>(to[d].rows.size());
    send_rows.insert(send_rows.end(), to[d].rows.begin(), to[d].rows.end());
    send_experts.insert(send_experts.end(), to[d].experts.begin(), to[d].experts.end());
    send_scales.insert(send_scales.end(), to[d].scales.begin(), to[d].scales.end());
  }
  route.recv_counts = ctx_.stage->alltoall_host(route.send_counts);
  const int64_t n_send = static_cast<int64_t>(send_rows.size());
  int64_t n_recv = 0;
  for (int64_t r : route.recv_counts) n_recv += r;

  route.rows = upload_temp(DType::I32, {n_send}, send_rows.data());
  route.scales = upload_temp(DType::F32, {n_send}, send_scales.data());
  route.experts = upload_temp(DType::I32, {n_send, 1}, send_experts.data());
  route.recv_weights = ones_for(n_recv);
  return route;
}

Tensor ModelForward::upload_temp(DType dtype, std::vector<int64_t> shape, const void* data) {
  Tensor t = ctx_.ops->temp(dtype, std::move(shape));
  if (t.numel() > 0) ctx_.ops->copy_from_host(t, data);
  return t;
}

ModelForward::ExpertRoute ModelForward::route_fixed(const Tensor& ids, const Tensor& weights,
                                                    int64_t dispatch_tokens) {
  Ops& ops = *ctx_.ops;
  const int64_t group = ctx_.stage->size(), capacity = dispatch_capacity(dispatch_tokens);
  const int64_t entries = group * capacity;
  MOETRON_CHECK(ids.rows() <= dispatch_tokens,
                "expert dispatch: " << ids.rows() << " tokens, capacity for " << dispatch_tokens);
  const auto [first, last] = dispatch_share(ids.rows());
  ExpertRoute route;
  route.rows = ops.temp(DType::I32, {entries});
  route.experts = ops.temp(DType::I32, {entries, 1});
  route.scales = ops.temp(DType::F32, {entries});
  ops.pack_dispatch(ids, weights, first, last, ctx_.expert_set_size, ctx_.expert_shards, capacity,
                    route.rows, route.experts, route.scales);
  route.send_counts.assign(static_cast<size_t>(group), capacity);
  route.recv_counts = route.send_counts;
  route.recv_weights = ones_for(entries);
  // Under uniform routing this rank's set gets set_size / ids of every slot of the stage's
  // replicas (each of the group's tp ranks sends a share of its replica's tokens); the predictor
  // prices the expert call at these rows (StepCost's expert_work).
  const int64_t replicas = group / ctx_.tp->size(), k = ids.numel() > 0 ? ids.cols() : ctx_.config->top_k;
  route.expected_entries =
      std::min(entries, expected_set_slots(dispatch_tokens * replicas * k, ctx_.expert_set_size, expert_id_count()));
  return route;
}

// Rank emulation with redundant experts. By emulation's assumption every replica holds this
// rank's tokens, but each routes them with its own copy tables (its dp index's rotation), so a
// peer sends this rank other slots than this rank sends itself: every peer's block for this
// rank is packed here from the peer's table and tp share, in one op whatever the number of peers
// (a real rank packs only its own tokens: per-peer launches would be timed as its work), and
// exchange_with_experts reads them in place of the emulated all-to-all's copies of the own
// block. On the counts path the blocks are cut to their entries, which become the receive counts.
void ModelForward::route_as_peers(size_t local_layer, const Tensor& ids, int64_t dispatch_tokens, ExpertRoute& route) {
  if (ids.rows() == 0) return;  // no peer has tokens either: the own (empty) blocks are right
  Ops& ops = *ctx_.ops;
  const int64_t group = ctx_.stage->size();
  const bool fixed = dispatch_tokens > 0;
  const int64_t capacity = dispatch_capacity(fixed ? dispatch_tokens : ids.rows());
  route.peer_rows = ops.temp(DType::I32, {group * capacity});
  route.peer_experts = ops.temp(DType::I32, {group * capacity, 1});
  ops.pack_from_peers(ids, ctx_.peer_tables.at(local_layer), ctx_.peer_senders, ctx_.tp->size(), ctx_.expert_set_size,
                      ctx_.expert_shards, ctx_.stage->rank(), capacity, route.peer_rows, route.peer_experts);
  if (!fixed) cut_to_entries(capacity, route);  // there every block is `capacity` entries
}

// The counts path: each peer's block of route.peer_rows / peer_experts cut to its entries (those
// before the -1 padding), whose numbers become the receive counts. This path waits for the host
// anyway (route_with_counts), so the blocks are cut there: a fixed number of copies per layer.
void ModelForward::cut_to_entries(int64_t capacity, ExpertRoute& route) {
  Ops& ops = *ctx_.ops;
  const int group = ctx_.stage->size();
  std::vector<int32_t> rows(static_cast<size_t>(route.peer_rows.numel())), experts(rows.size());
  ops.to_host(route.peer_rows, rows.data());
  ops.to_host(route.peer_experts, experts.data());
  int64_t n_recv = 0;
  for (int p = 0; p < group; ++p) {
    const auto block = static_cast<std::ptrdiff_t>(p * capacity);
    const int64_t n = std::count_if(experts.begin() + block, experts.begin() + block + capacity,
                                    [](int32_t e) { return e >= 0; });
    route.recv_counts[static_cast<size_t>(p)] = n;
    // Left to its place among the cut blocks: never past where it reads.
    std::copy_n(rows.begin() + block, n, rows.begin() + n_recv);
    std::copy_n(experts.begin() + block, n, experts.begin() + n_recv);
    n_recv += n;
  }
  route.peer_rows = upload_temp(DType::I32, {n_recv}, rows.data());
  route.peer_experts = upload_temp(DType::I32, {n_recv, 1}, experts.data());
  route.recv_weights = ones_for(n_recv);
}

// Weights [n, 1] for n received entries. No peer sends more than dispatch_capacity(tokens) of a
// forward's tokens, which ones_ is sized for, so neither path uploads anything per layer.
Tensor ModelForward::ones_for(int64_t n) const {
  MOETRON_CHECK(n <= ones_.numel(), "expert dispatch: " << n << " entries received, at most "
                                                        << ones_.numel() << " expected");
  return ones_.slice_rows(0, n).reshape({n, 1});
}

void ModelForward::exchange_with_experts(const LayerWeights& w, const Tensor& h,
                                         const ExpertRoute& route, Tensor& out) {
  Ops& ops = *ctx_.ops;
  Communicator& stage = *ctx_.stage;
  const int64_t H = ctx_.config->hidden_size, n_send = route.rows.numel();
  const int64_t n_recv = route.recv_weights.numel();
  const DType act = ops.activation_dtype();
  Tensor send_x = ops.temp(act, {n_send, H});
  ops.gather_rows(h, route.rows, send_x);
  Tensor recv_x = ops.temp(act, {n_recv, H});
  Tensor recv_e = ops.temp(DType::I32, {n_recv, 1});
  stage.alltoallv(send_x, route.send_counts, recv_x, route.recv_counts);
  stage.alltoallv(route.experts, route.send_counts, recv_e, route.recv_counts);
  if (route.peer_rows.defined()) {  // rank emulation: what the peers' own tables send here
    ops.gather_rows(h, route.peer_rows, recv_x);
    ops.copy(route.peer_experts, recv_e);
  }

  // Each received row is one (token, expert) pair, or padding (expert -1, which no rank owns):
  // weight 1 here, the routing weight is applied where the token lives.
  Tensor recv_y = ops.temp(act, {n_recv, H});
  run_experts(w, recv_x, recv_e, route.recv_weights, route.expected_entries, recv_y);

  Tensor back = ops.temp(act, {n_send, H});
  stage.alltoallv(recv_y, route.recv_counts, back, route.send_counts);
  ops.fill_zero(out);
  ops.scatter_add_rows(out, back, route.rows, route.scales);
}

Tensor ModelForward::logits_device(const Tensor& hidden, const BatchTensors& batch) {
  const ModelConfig& c = *ctx_.config;
  Ops& ops = *ctx_.ops;
  const int64_t L = batch.logit_rows.numel();
  const DType act = ops.activation_dtype();
  Tensor x = ops.temp(act, {L, c.hidden_size});
  ops.gather_rows(hidden, batch.logit_rows, x);
  Tensor normed = ops.temp(act, {L, c.hidden_size});
  ops.rmsnorm(x, ctx_.weights->final_norm, static_cast<float>(c.rms_norm_eps), normed);
  const int64_t shard_vocab = ctx_.weights->lm_head.dim(0);
  Tensor local = ops.temp(act, {L, shard_vocab});
  ops.linear(normed, ctx_.weights->lm_head, nullptr, local);
  Tensor local_f = ops.temp(DType::F32, {L, shard_vocab});
  ops.to_float(local, local_f);
  const int64_t tp = ctx_.tp->size();
  if (tp == 1) return local_f;
  // Vocab-parallel head: every rank gathers every slice ([tp, L, ceil(V / tp)]) and lays their
  // real tokens side by side, so that the rows are whole on the device (sampling needs no host
  // copy of them) and exactly V wide: a padded slice's last columns are left out.
  Tensor gathered = ops.temp(DType::F32, {tp * L, shard_vocab});
  ctx_.tp->allgather(local_f, gathered);
  Tensor rows = ops.temp(DType::F32, {L, c.vocab_size});
  for (int64_t r = 0; r < tp; ++r) {
    const Range real = vocab_shard(c.vocab_size, tp, r);
    ops.copy_columns(gathered.slice_rows(r * L, L), real.size(), rows, real.begin);
  }
  return rows;
}

std::vector<float> ModelForward::logits_to_host(const Tensor& logits, int64_t rows) {
  MOETRON_ASSERT(rows <= logits.rows() && logits.cols() == ctx_.config->vocab_size);
  std::vector<float> host(static_cast<size_t>(rows * logits.cols()));
  if (!host.empty()) ctx_.ops->to_host(logits.slice_rows(0, rows), host.data());
  return host;
}

std::vector<int64_t> ModelForward::expert_counts() {
  std::vector<int64_t> all(static_cast<size_t>(expert_counts_all_.numel()));
  ctx_.ops->to_host(expert_counts_all_, all.data());
  return all;
}

std::vector<int64_t> ModelForward::coactivation_counts() {
  std::vector<int64_t> all(static_cast<size_t>(coactivation_all_.numel()));
  ctx_.ops->to_host(coactivation_all_, all.data());
  return all;
}

ExpertWork ModelForward::expert_work() {
  std::vector<int64_t> by_expert(static_cast<size_t>(served_.numel()));
  ctx_.ops->to_host(served_, by_expert.data());
  ExpertWork work;
  const Range mine = my_expert_ids();
  for (int64_t e = mine.begin; e < mine.end && e < served_.numel(); ++e) work.tokens += by_expert[static_cast<size_t>(e)];
  work.seconds = ctx_.ops->timed_section_seconds() - expert_seconds_before_;
  return work;
}

void ModelForward::forget_expert_work() {
  ctx_.ops->fill_zero(served_);
  expert_seconds_before_ = ctx_.ops->timed_section_seconds();
}

std::vector<Communicator*> ModelForward::groups() const {
  std::vector<Communicator*> out;
  for (Communicator* c : {ctx_.tp, ctx_.stage})
    if (c != nullptr && std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  return out;
}

}  // namespace moetron
