// The MoE transformer's forward pass, written once against Ops (math) and Communicator (data
// movement): one rank or many, CPU or CUDA, MPI or NCCL all run this code.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/comm/communicator.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weights.hpp"

namespace moetron {

struct ForwardContext {
  const ModelConfig* config = nullptr;
  Ops* ops = nullptr;
  const ShardSpec* shard = nullptr;
  const ModelWeights* weights = nullptr;
  Communicator* tp = nullptr;  // tensor-parallel group (a group of one when tp = 1)
  // Expert dispatch between data-parallel replicas. When the stage has one replica every rank
  // already holds every token, so experts run locally and the tp all-reduce combines them;
  // with several replicas tokens go to the ranks owning their experts (all-to-all) and back.
  Communicator* stage = nullptr;  // the tp x dp ranks of this stage; nullptr: no dispatch
  int64_t expert_set_size = 0;    // slot ids per expert-parallel set (E / ep, plus its replicas)
  int64_t expert_shards = 1;      // ranks sharing one set, each holding a column slice
  bool count_experts = true;      // accumulate routed-token counts (one tp rank per replica)
  int64_t max_tokens = 0;         // most tokens in one forward (sizes the routing record)
  // Redundant experts (parallel/expert_replicas.hpp): per local layer, the copy table
  // Ops::route_to_replicas reads (undefined for a dense layer); empty: no replicas. With them
  // the experts' paths work on slot ids and expert_set_size is the slot ids per set (E / ep plus
  // the spare slots); the weights' ExpertWeights are numbered the same way.
  std::vector<Tensor> replica_tables;
  // Rank emulation with redundant experts: the copy tables the ranks of the stage group route
  // with (replica_tables of each one's dp index's rotation), as Ops::pack_from_peers reads them,
  // so that the emulated peers send this rank what their own tables route here, not what this
  // rank's table sends itself (route_as_peers). Per local layer the distinct tables stacked,
  // I32 [U, E, C] (undefined for a dense layer); empty otherwise.
  std::vector<Tensor> peer_tables;
  Tensor peer_senders;  // I32 [stage ranks, 2]: each rank's index into peer_tables and tp rank
};

// What one rank's experts computed over a run.
struct ExpertWork {
  int64_t tokens = 0;   // token-slots its moe_experts calls processed for its own experts
  double seconds = 0;   // the time of those calls (Ops::timed_section_seconds)
};

class ModelForward {
 public:
  ModelForward(const ForwardContext& ctx, int64_t kv_blocks, int64_t block_size);

  // First stage: the token embeddings of the batch, [T, H].
  Tensor embed(const BatchTensors& batch);
  // This stage's layers on the residual stream `hidden` [T, H], in place.
  void run_layers(Tensor& hidden, const BatchTensors& batch);
  // Last stage: final norm and LM head for batch.logit_rows, gathered over the tp group, in
  // backend memory: F32 [L, vocab].
  Tensor logits_device(const Tensor& hidden, const BatchTensors& batch);
  // The first `rows` rows of such a tensor as float32 [rows * vocab] on the host, row-major.
  std::vector<float> logits_to_host(const Tensor& logits, int64_t rows);
  std::vector<float> logits(const Tensor& hidden, const BatchTensors& batch) {
    return logits_to_host(logits_device(hidden, batch), batch.logit_rows.numel());
  }

  // Adds the last forward's routing of its first num_tokens tokens (the real ones) to the
  // per-expert counts. Enqueued on the backend; never waits for it.
  void count_routing(int64_t num_tokens);
  // Routed token-slots per (local layer, expert), counted so far: [local layers * E].
  std::vector<int64_t> expert_counts();
  // Tokens that chose both experts a and b, per (local layer, a, b), counted with the routing:
  // [local layers * E * E], symmetric, the diagonal being expert_counts().
  std::vector<int64_t> coactivation_counts();
  // This rank's expert work so far (waits for the backend).
  ExpertWork expert_work();
  // Starts expert_work() afresh: what a warm-up forward served and timed is not the run's.
  void forget_expert_work();
  const ForwardContext& context() const { return ctx_; }
  // The groups this forward moves data over (tp, then the expert dispatch's), each once: a
  // recorded step's or a warm-up's traffic is counted (and taken back) over them.
  std::vector<Communicator*> groups() const;
  size_t kv_cache_bytes() const { return kv_bytes_; }

 private:
  void attention_block(const LayerWeights& w, size_t local_layer, const Tensor& h,
                       const BatchTensors& batch, Tensor& out);
  Tensor qk_norm_across_tp(const Tensor& x, const Tensor& w, int64_t total_cols,
                           int64_t replication);
  void mlp_block(const LayerWeights& w, size_t local_layer, const Tensor& h,
                 const BatchTensors& batch, Tensor& out);

  // Expert dispatch between replicas: where each entry this rank sends goes, and what comes
  // back (see dispatch_experts).
  struct ExpertRoute {
    Tensor rows;     // I32 [n_send]: the token row of each sent entry (-1: padding)
    Tensor experts;  // I32 [n_send, 1]: its global expert (-1: padding)
    Tensor scales;   // F32 [n_send]: its routing weight
    std::vector<int64_t> send_counts, recv_counts;  // entries per peer
    Tensor recv_weights;  // F32 [n_recv, 1]: ones (a view of ones_)
    // Received entries expected to be real where the buffers are mostly padding (the fixed
    // capacity), for the expert kernels' choice (Ops::moe_experts); -1: all of them are.
    int64_t expected_entries = -1;
    // Rank emulation with peer tables: what each peer's own routing sends here, in peer order
    // (row -1 and expert -1: padding); undefined otherwise.
    Tensor peer_rows;     // I32 [n_recv]: token rows of this rank's h
    Tensor peer_experts;  // I32 [n_recv, 1]
  };
  void dispatch_experts(const LayerWeights& w, size_t local_layer, const Tensor& h, const Tensor& ids,
                        const Tensor& weights, int64_t dispatch_tokens, Tensor& out);
  Tensor route_to_copies(size_t local_layer, const Tensor& ids);
  bool uses_slot_ids() const;
  int64_t expert_id_count() const;
  Range my_expert_ids() const;
  std::pair<int64_t, int64_t> dispatch_share(int64_t tokens) const;
  int64_t dispatch_capacity(int64_t tokens) const;
  ExpertRoute route_with_counts(const Tensor& ids, const Tensor& weights);
  ExpertRoute route_fixed(const Tensor& ids, const Tensor& weights, int64_t dispatch_tokens);
  void route_as_peers(size_t local_layer, const Tensor& ids, int64_t dispatch_tokens, ExpertRoute& route);
  void cut_to_entries(int64_t capacity, ExpertRoute& route);
  Tensor upload_temp(DType dtype, std::vector<int64_t> shape, const void* data);
  void exchange_with_experts(const LayerWeights& w, const Tensor& h, const ExpertRoute& route,
                             Tensor& out);
  Tensor ones_for(int64_t n) const;
  void allreduce_tp(Tensor& t);
  void run_experts(const LayerWeights& w, const Tensor& x, const Tensor& ids, const Tensor& weights, int64_t expected_slots,
                   Tensor& out);

  ForwardContext ctx_;
  std::vector<KvCache> caches_;  // one per local layer
  Tensor expert_counts_all_;                   // I64 [local layers, E], in backend memory
  Tensor coactivation_all_;                    // I64 [local layers, E, E]
  Tensor routing_all_;                        // I32 [local layers, max_tokens, k]: the records
  std::vector<Tensor> routing_;               // per local layer: its [max_tokens, k] record
  double expert_seconds_before_ = 0;  // the backend's timed-section total when expert_work starts
  Tensor served_;  // I64 [E]: slots this rank's moe_experts calls were given, by global expert
  Tensor ones_;  // F32: weights of the entries an expert dispatch receives
  size_t kv_bytes_ = 0;
};

}  // namespace moetron
