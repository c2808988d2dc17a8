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

size_t step_arena_bytes(const ModelConfig& c, const ShardSpec& s, const Plan& plan, DType activations,
                        int64_t max_tokens, int64_t max_seqs, int64_t redundant_experts) {
  const int64_t a = size_of(activations);
  const int64_t hd = c.head_dim, k = std::max<int64_t>(c.top_k, 1);
  const int64_t q = s.q_head_count * hd, kv = s.kv_head_count * hd;
  const int64_t per_token_elems =
      4 * c.hidden_size + 3 * q + 3 * kv + c.num_experts + 4 * k +
      k * (2 * c.hidden_size + 3 * std::max(s.expert_col_count, int64_t{1})) +
      3 * std::max(s.shared_col_count, s.mlp_col_count) + c.hidden_size;
  // Per row: the hidden state and its norm, the LM head's slice at the activation width and in
  // float32, their tp-way gather and the row (float32).
  const int64_t logits_bytes =
      max_seqs * (2 * c.hidden_size * a + s.vocab_rows * (a + 4) + (plan.tp * s.vocab_rows + c.vocab_size) * 4);
  int64_t dispatch_bytes = 0;
  if (plan.dp > 1) {
    const int64_t entries = static_cast<int64_t>(plan.tp) * plan.dp * ((max_seqs + plan.tp - 1) / plan.tp) *
                            dispatch_slots_per_set(c, plan, redundant_experts);
    // send, received, expert output and returned rows, the permuted copies, ids and weights
    dispatch_bytes = entries * ((6 * c.hidden_size + 2 * std::max(s.expert_col_count, int64_t{1})) * a + 32);
  }
  const double bytes =
      static_cast<double>(max_tokens * per_token_elems * a + logits_bytes + dispatch_bytes) * 1.25;
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
