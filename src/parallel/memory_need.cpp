#include "moetron/parallel/memory_need.hpp"

#include <algorithm>
#include <sstream>

#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
#include "moetron/parallel/expert_replicas.hpp"
#include "moetron/parallel/plan.hpp"

namespace moetron {

namespace {

int64_t size_of(DType t) { return static_cast<int64_t>(dtype_size(t)); }

std::string bytes_text(int64_t bytes) { return human_bytes(static_cast<double>(bytes)); }

const char* width_name(DType t) { return t == DType::F32 ? "float32" : t == DType::BF16 ? "bf16" : dtype_name(t); }

int64_t kv_cache_bytes(const ModelConfig& c, const ShardSpec& s, const BackendStorage& storage,
                       const RunShape& run) {
  if (run.kv_tokens <= 0) return 0;
  const int64_t block = std::max<int64_t>(run.block_size, 1);
  const int64_t allocated_tokens = (run.kv_tokens / block + 1) * block;  // + the scratch block
  return allocated_tokens * kv_bytes_per_token(s.layer_end - s.layer_begin, s.kv_head_count, c.head_dim,
                                               storage.activations);
}

// What ModelForward keeps for the whole run besides the KV cache: per layer, the routing record,
// the expert counts and the co-activation counts (E x E, int64: 0.5 MiB a layer at 256 experts);
// with dp > 1, the weights of every entry a dispatch can receive.
int64_t forward_state_bytes(const ModelConfig& c, const Plan& plan, const ShardSpec& s, int64_t max_tokens,
                            int64_t redundant_experts) {
  const int64_t tokens = std::max<int64_t>(max_tokens, 1), k = std::max<int64_t>(c.top_k, 1);
  const int64_t experts = std::max<int64_t>(c.num_experts, 1);
  const int64_t per_layer = tokens * k * 4 + experts * 8 + experts * experts * 8;
  int64_t dispatch_weights = 0;
  if (plan.dp > 1) {
    dispatch_weights = static_cast<int64_t>(plan.stage_size()) * ((tokens + plan.tp - 1) / plan.tp) *
                       dispatch_slots_per_set(c, plan, redundant_experts) * 4;
  }
  return (s.layer_end - s.layer_begin) * per_layer + dispatch_weights;
}

// The part that takes a rank past `available`, counting what any run needs first (weights, then
// activations) and the KV cache, the part a run can most easily shrink, last.
std::string overflowing_part(const MemoryNeed& n, int64_t available) {
  if (n.weights > available) return "the weights alone do not fit; use more ranks or pipeline stages";
  if (n.weights + n.activations > available)
    return "the activations do not fit beside the weights; use a smaller --max-batch-tokens or --max-batch, "
           "more ranks or pipeline stages";
  return "the KV cache does not fit beside the weights and activations; use a smaller --kv-cache-tokens, "
         "shorter or fewer requests, more ranks or pipeline stages";
}

}  // namespace

int64_t kv_bytes_per_token(int64_t layers, int64_t kv_heads, int64_t head_dim, DType dtype) {
  return layers * 2 * kv_heads * head_dim * size_of(dtype);
}

BackendStorage backend_storage(const std::string& backend) {
  if (backend == "cpu") return {"cpu", DType::F32, DType::F32};
  MOETRON_CHECK(backend == "cuda", "--backend: no memory model for backend '" << backend << "' (expected cpu or cuda)");
  return {"cuda", DType::BF16, DType::BF16};
}

int64_t dispatch_slots_per_set(const ModelConfig& c, const Plan& plan, int64_t redundant_experts) {
  return std::min<int64_t>(c.top_k, c.num_experts / plan.ep + replica_slots_per_set(redundant_experts, plan.ep));
}

int64_t replica_weight_params(const ModelConfig& c, const Plan& plan, const ShardSpec& s, int64_t redundant_experts) {
  int64_t moe_layers = 0;
  for (int64_t layer = s.layer_begin; layer < s.layer_end; ++layer) moe_layers += is_moe_layer(c, layer) ? 1 : 0;
  return moe_layers * replica_slots_per_set(redundant_experts, plan.ep) * 3 * c.hidden_size * s.expert_col_count;
}

int64_t step_temp_bytes(const ModelConfig& c, const ShardSpec& s, const Plan& plan, DType activations,
                        int64_t max_tokens, int64_t max_seqs, int64_t redundant_experts) {
  const int64_t a = size_of(activations);
  const int64_t hd = c.head_dim, k = std::max<int64_t>(c.top_k, 1), H = c.hidden_size;
  const int64_t q = s.q_head_count * hd, kv = s.kv_head_count * hd;
  const int64_t expert_cols = std::max(s.expert_col_count, int64_t{1});
  // Every step token's share of one layer (ModelForward::run_layers releases a layer's scratch
  // before the next), in elements at the activation width, counted generously:
  // - 4 H + H: the hidden state, the norm's output h and the block output delta (kept across
  //   layers), the shared expert's output, and spare rows: the batch's int32 inputs and a
  //   whole-projection QK norm across tp ranks (OLMoE, no shared expert), which takes q and k
  //   out of qkv and normalises them into new copies (2 q + 2 kv, at most 2 H from tp = 2 on);
  // - 3 q + 3 kv: the qkv projection (q + 2 kv), q after RoPE, attention's output (q), and the
  //   k and v copies of the unfused attention_inputs;
  // - E + 4 k: the router's float32 logits (at bf16, half their bytes: in the spare rows) and
  //   the top-k ids, weights and copy slots;
  // - with one replica per stage, the experts run on the step's tokens: CudaOps::moe_experts'
  //   permuted rows in and out (2 H) and gate/up and activation columns (3 cols) per slot;
  //   with several, they run on the dispatch's entries instead (dispatch_bytes);
  // - 3 wider columns: the shared expert's or dense MLP's gate/up and activation (swiglu_mlp).
  const int64_t expert_elems = plan.dp > 1 ? 0 : k * (2 * H + 3 * expert_cols);
  const int64_t per_token_elems = 4 * H + 3 * q + 3 * kv + c.num_experts + 4 * k + expert_elems +
                                  3 * std::max(s.shared_col_count, s.mlp_col_count) + H;
  // Per row: the hidden state and its norm, the LM head's slice at the activation width and in
  // float32, their tp-way gather and the row (float32).
  const int64_t logits_bytes =
      max_seqs * (2 * H * a + s.vocab_rows * (a + 4) + (plan.tp * s.vocab_rows + c.vocab_size) * 4);
  int64_t dispatch_bytes = 0;
  if (plan.dp > 1) {
    // Several replicas share the stage's experts (ModelForward::exchange_with_experts). A step of
    // T tokens per replica, a prefill of up to max_tokens (the host-counted path) or a decode of
    // max_seqs (fixed capacity), gives this rank at most stage_size * ceil(T / tp) *
    // dispatch_slots_per_set entries to receive (each peer sends its tp share of its replica's
    // tokens, each at most that many times), and to send no more (its share, each token's k
    // slots to every shard of the slot's set). An emulated rank receives its own block from
    // every peer: the same count.
    const int64_t tokens = std::max(max_tokens, max_seqs);
    const int64_t entries = static_cast<int64_t>(plan.stage_size()) * ((tokens + plan.tp - 1) / plan.tp) *
                            dispatch_slots_per_set(c, plan, redundant_experts);
    // Per entry, at the activation width: the rows sent, received, computed by the experts and
    // returned (4 H), moe_experts' permuted rows in and out (2 H) and its gate/up and activation
    // columns (3 cols); in bytes: the send rows, slot ids and scales, the received slot ids, an
    // emulated rank's peer rows and slot ids and their cut copies, moe_experts' routing (44).
    dispatch_bytes = entries * ((6 * H + 3 * expert_cols) * a + 44);
  }
  return max_tokens * per_token_elems * a + logits_bytes + dispatch_bytes;
}

size_t step_arena_bytes(const ModelConfig& c, const ShardSpec& s, const Plan& plan, DType activations,
                        int64_t max_tokens, int64_t max_seqs, int64_t redundant_experts) {
  const double bytes =
      static_cast<double>(step_temp_bytes(c, s, plan, activations, max_tokens, max_seqs, redundant_experts)) * 1.25;
  return static_cast<size_t>(bytes) + (64u << 20);
}

MemoryNeed memory_need(const ModelConfig& c, const Plan& plan, const ShardSpec& shard,
                       const BackendStorage& storage, const RunShape& run) {
  MemoryNeed n;
  n.weights = (weight_shard_params(c, shard) + replica_weight_params(c, plan, shard, run.redundant_experts)) *
              size_of(storage.weights);
  n.kv_cache = kv_cache_bytes(c, shard, storage, run);
  n.activations = static_cast<int64_t>(step_arena_bytes(c, shard, plan, storage.activations, run.max_step_tokens,
                                                        run.max_batch, run.redundant_experts)) +
                  forward_state_bytes(c, plan, shard, run.max_step_tokens, run.redundant_experts);
  return n;
}

RankNeed largest_memory_need(const Plan& plan, const ModelConfig& c, const BackendStorage& storage,
                             const RunShape& run) {
  RankNeed most;
  for (int r = 0; r < plan.world_size(); ++r) {
    const MemoryNeed n = memory_need(c, plan, layout_for(plan, c, r).shard, storage, run);
    if (r == 0 || n.total() > most.need.total()) most = {r, n};
  }
  return most;
}

std::string describe_need(const MemoryNeed& n, const BackendStorage& storage, const RunShape& run) {
  std::ostringstream os;
  os << "weights " << bytes_text(n.weights) << " as " << width_name(storage.weights) << " on the "
     << storage.backend << " backend, KV cache " << bytes_text(n.kv_cache) << " for " << run.kv_tokens
     << " tokens, activations " << bytes_text(n.activations);
  return os.str();
}

std::string memory_problem(const Plan& plan, const ModelConfig& c, const MemoryBudget& budget) {
  if (budget.bytes_per_rank <= 0) return "";
  const RankNeed most = largest_memory_need(plan, c, budget.storage, budget.run);
  if (most.need.total() <= budget.bytes_per_rank) return "";
  std::ostringstream os;
  os << "--plan " << plan.to_string() << ": rank " << most.rank << " needs " << bytes_text(most.need.total())
     << " (" << describe_need(most.need, budget.storage, budget.run) << ") but a rank has "
     << bytes_text(budget.bytes_per_rank) << (budget.source.empty() ? "" : " (" + budget.source + ")") << ": "
     << overflowing_part(most.need, budget.bytes_per_rank);
  return os.str();
}

}  // namespace moetron
