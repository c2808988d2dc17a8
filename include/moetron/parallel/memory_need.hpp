// What one rank of a plan will hold in memory, part by part, known before anything is loaded.
// The plan check (validate_plan, choose_auto_plan) refuses plans whose largest rank does not fit;
// RunSession sizes the CUDA step arena with step_arena_bytes, so the check and the engine share
// one formula; the performance predictor reads the same breakdown.
//
// Each part mirrors one allocation of a run; change them together:
// - Weights: every parameter of the rank's shard (weight_shard_params, plan.hpp) at the width the
//   backend keeps it: CpuOps::upload_weight converts to float32 (4 bytes, twice the checkpoint's
//   bf16), CudaOps::upload_weight to bf16 (2 bytes).
// - KV cache: ModelForward allocates, for each of the rank's layers, K and V of
//   kv_tokens / block_size blocks plus one (the scratch block that padded decode rows write
//   into), each block_size x the rank's kv heads x head_dim, in the backend's activation dtype
//   (float32 on the cpu, bf16 on cuda). Which kv_tokens a check uses is the engine's policy
//   (kv_tokens_to_fit, engine/run_session.hpp).
// - Activations: step_arena_bytes (one layer's temporaries for the largest step, the logits of
//   a full batch, when dp > 1 the expert exchange's buffers for the largest step (a prefill of
//   max_step_tokens or a decode of max_batch), x1.25 and 64 MiB of slack),
//   which CudaOps reserves at once and the CPU allocates step by step at its own activation
//   width; plus what ModelForward keeps for the whole run: per layer, the routing record
//   (max_step_tokens x top_k int32) and the expert counts (experts x int64), and with dp > 1 the
//   dispatch weights (one float32 per entry a dispatch can receive).
// - Redundant experts (--redundant-experts R, parallel/expert_replicas.hpp): every rank is counted
//   with the most copies a set can get, ceil(R / ep) experts per MoE layer (its column slice of
//   each), as weights; the dispatch's entries per peer grow with the wider slot-id sets
//   (dispatch_slots_per_set).
// - Not counted: transient host copies while loading (one tensor, or one layer's expert stack, in
//   the checkpoint's dtype), the CUDA context and cuBLAS workspaces (the cuda memory per rank is
//   measured after the context exists), decode CUDA graphs, MPI and NCCL buffers, the process's
//   code, the prompts and the results.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "moetron/core/dtype.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weights.hpp"  // ShardSpec

namespace moetron {

struct Plan;  // plan.hpp

// How a backend stores what a rank holds.
struct BackendStorage {
  std::string backend = "cuda";           // for messages
  DType weights = DType::BF16;            // per parameter
  DType activations = DType::BF16;        // activations and the KV cache
};
// "cpu": float32 weights and activations; "cuda": bf16 both. Other names are an Error naming
// --backend.
BackendStorage backend_storage(const std::string& backend);

// What the run asks of every rank, whatever its shard.
struct RunShape {
  int64_t kv_tokens = 0;        // KV-cache tokens per replica (see kv_tokens_to_fit)
  int64_t block_size = 16;      // tokens per KV-cache block (--block-size)
  int64_t max_step_tokens = 1;  // tokens in the largest step (see max_step_tokens)
  int64_t max_batch = 1;        // sequences in one step (--max-batch)
  int64_t redundant_experts = 0;  // --redundant-experts: extra expert copies per MoE layer
};

// One rank's bytes, by part.
struct MemoryNeed {
  int64_t weights = 0, kv_cache = 0, activations = 0;
  int64_t total() const { return weights + kv_cache + activations; }
};

// Bytes of K and V one token takes on a rank: its layers times its kv heads.
int64_t kv_bytes_per_token(int64_t layers, int64_t kv_heads, int64_t head_dim, DType dtype);

// Bytes for one step's temporaries on a rank with this shard: the largest layer's scratch for
// max_tokens tokens (attention, router, the permuted expert rows and their intermediate
// activations, the shared expert) plus the logits of max_seqs rows, with slack. With several
// replicas, the experts run on the entries the expert exchange receives instead: for the largest
// step (a prefill of max_tokens, or a decode of max_seqs with its fixed capacity,
// ModelForward::dispatch_capacity, padded entries included) every peer's tp share of its
// replica's tokens, each up to dispatch_slots_per_set times.
size_t step_arena_bytes(const ModelConfig& c, const ShardSpec& s, const Plan& plan, DType activations,
                        int64_t max_tokens, int64_t max_seqs, int64_t redundant_experts = 0);
// What step_arena_bytes counts before its slack (x1.25 and 64 MiB): the bytes of the
// temporaries alive at once in the largest step, as the CUDA arena counts them. A CPU run's
// cpu_peak_temp_bytes (backend/cpu_ops.hpp) must not exceed it at activations = F32.
int64_t step_temp_bytes(const ModelConfig& c, const ShardSpec& s, const Plan& plan, DType activations,
                        int64_t max_tokens, int64_t max_seqs, int64_t redundant_experts = 0);

// The most entries one token can send one expert set's rank (ModelForward::dispatch_capacity's
// per-token factor): min(top-k, the set's experts plus its spare slots for redundant experts).
int64_t dispatch_slots_per_set(const ModelConfig& c, const Plan& plan, int64_t redundant_experts);

// Parameters of the redundant-expert copies the rank holding `shard` is counted with.
int64_t replica_weight_params(const ModelConfig& c, const Plan& plan, const ShardSpec& shard,
                              int64_t redundant_experts);

// What the rank holding `shard` of `plan` needs for this run.
MemoryNeed memory_need(const ModelConfig& c, const Plan& plan, const ShardSpec& shard,
                       const BackendStorage& storage, const RunShape& run);

// The rank of the plan that needs the most (the lowest such rank on a tie), and its need.
struct RankNeed {
  int rank = 0;
  MemoryNeed need;
};
RankNeed largest_memory_need(const Plan& plan, const ModelConfig& c, const BackendStorage& storage,
                             const RunShape& run);

// "weights 2.40 GiB as float32 on the cpu backend, KV cache 512.00 MiB for 4096 tokens,
// activations 200.00 MiB"
std::string describe_need(const MemoryNeed& need, const BackendStorage& storage, const RunShape& run);

// The memory a plan must fit on each rank, and what the run puts there.
struct MemoryBudget {
  int64_t bytes_per_rank = 0;  // 0: unknown, nothing is checked
  std::string source;          // where bytes_per_rank comes from, for messages
  BackendStorage storage;
  RunShape run;
};

// Why `plan` does not fit `budget`, naming --plan, the rank that needs the most, each part's
// size and the part that overflows (weights, then activations, then the KV cache, which a run
// can most easily shrink); "" when it fits or the memory is unknown.
std::string memory_problem(const Plan& plan, const ModelConfig& c, const MemoryBudget& budget);

}  // namespace moetron
