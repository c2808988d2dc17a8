// CostModel: the predictor's only view of the hardware. Each call answers "how long does this
// one operation take on one rank", in seconds, for the shapes the model's forward produces.
//
// Two implementations are planned and the predictor must not care which one it has:
//   - RooflineCostModel (predict/): max(FLOPs / peak rate, bytes / bandwidth) per kernel, and
//     latency + bytes / bus bandwidth per collective, from a handful of numbers
//     (predict/roofline_cost_model.hpp; what `moetron plan` and the tests use);
//   - a profile-backed model (bench/): medians measured by `moetron bench` with the model's own
//     shapes, interpolated between the measured sizes.
// Sizes are the ones a single rank sees (after its plan's sharding), never global ones.
// A compute call answers the kernel's own time on the device; the gap between two kernels (launch,
// graph node) is kernel_overhead_s, which the predictor adds once per kernel it counts, so that
// neither is counted twice. A collective's time includes its latency.
#pragma once
#include <cstdint>
#include <string>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/bench/launch_family.hpp"

namespace moetron {

// Where the ranks of a collective sit: all on one node (NVLink / shared memory) or spread over
// nodes (the network). A group that spans nodes runs at the network's rate.
enum class LinkScope { IntraNode, InterNode };

class CostModel {
 public:
  virtual ~CostModel() = default;

  // Whether every answer is a floor of what the hardware can do (the roofline's), so that a step
  // priced by this model bounds what the engine achieves and composes its parts by the cheaper
  // reading (predictor.hpp: assumption 15 for ranks sharing a device); false for measurements,
  // which are centred on the engine's times.
  virtual bool prices_floors() const { return false; }

  // ---- compute (one rank, one device) ----
  // A dense bf16 GEMM: [m x k] times [k x n] (m = tokens).
  virtual double gemm_s(int64_t m, int64_t n, int64_t k) const = 0;
  // The grouped expert GEMM: `experts` active experts, each [tokens_per_expert x k] x [k x n],
  // in one expert call of `call_tokens` tokens (the backend picks its kernel from that count:
  // backend/expert_paths.hpp). by_gemms: the call runs one GEMM per expert, several experts at
  // once (expert_call_by_gemms), and is priced from points measured on that path.
  virtual double grouped_gemm_s(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k,
                                int64_t call_tokens, bool by_gemms = false) const = 0;
  // Which eager calls the engine priced here gives to the per-expert cuBLAS GEMMs (recorded,
  // graph-replayed calls never: they read the row counts on the host): a profile's own kernels
  // say (expert_gemm_rule_of_profile); without one, the rule of MOETRON_EXPERT_GEMM=cublas.
  virtual ExpertGemmRule expert_gemm_rule() const { return ExpertGemmRule::kHostCost; }
  // Paged attention of `rows` query tokens over `context` cached tokens each, for q_heads query
  // and kv_heads key/value heads of head_dim (decode: rows = batch, one token each).
  virtual double attention_s(int64_t rows, int64_t context, int64_t q_heads, int64_t kv_heads,
                             int64_t head_dim, bool prefill) const = 0;
  // A memory-bound kernel that reads and writes `bytes` in total (norms, RoPE, routing,
  // permutation, activation, sampling).
  virtual double memory_bound_s(int64_t bytes) const = 0;
  // Ops::attention_inputs (QK-norm, RoPE, the KV append) of `rows` tokens, and greedy sampling of
  // `rows` rows of `vocab` logits with the ids to the host: one fused kernel on CUDA, several ops
  // and host-side math on the CPU (Ops' default composites). `bytes`: what one fused kernel reads
  // and writes; a model without measurements of these ops prices them as that memory-bound kernel.
  virtual double attention_inputs_s(int64_t rows, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                                    int64_t bytes) const {
    (void)rows, (void)q_heads, (void)kv_heads, (void)head_dim;
    return memory_bound_s(bytes);
  }
  virtual double sampling_s(int64_t rows, int64_t vocab, int64_t bytes) const {
    (void)rows, (void)vocab;
    return memory_bound_s(bytes);
  }
  // Ops::copy of `bytes` (read, and written elsewhere), the kernel's own time: what an emulated
  // rank's collectives become (predictor.hpp, assumption 13). A model without a measurement of
  // it prices it as a memory-bound kernel of both.
  virtual double copy_s(int64_t bytes) const { return memory_bound_s(2 * bytes); }
  // The host's bookkeeping of one forward of `tokens` tokens on a rank holding `layers` layers
  // (engine.cpp's run_micro_batch: reset_temps, the batch layout built and uploaded, the routing
  // counted): not a kernel, no gap added. A model without a measurement of it prices it at zero.
  virtual double host_step_s(int64_t tokens, int64_t layers, int64_t experts, int64_t top_k) const {
    (void)tokens, (void)layers, (void)experts, (void)top_k;
    return 0;
  }
  // The fixed cost of one kernel inside a recorded graph (decode) or launched eagerly (prefill).
  virtual double kernel_overhead_s(bool in_graph) const = 0;
  // The host's time to enqueue one call of an op of `family` (an eager step's launch pipeline:
  // where the host cannot keep the device busy, these set the pace). A model without a
  // measurement of it prices every family at the eager launch gap.
  virtual double launch_s(LaunchFamily family) const {
    (void)family;
    return kernel_overhead_s(false);
  }

  // ---- communication (over a group of `ranks` ranks) ----
  virtual double allreduce_s(int64_t bytes, int ranks, LinkScope scope) const = 0;
  // All-to-all(v) where each rank sends `bytes_per_rank` in total, spread over its peers.
  virtual double alltoall_s(int64_t bytes_per_rank, int ranks, LinkScope scope) const = 0;
  // One message between two ranks (pipeline stages).
  virtual double send_recv_s(int64_t bytes, LinkScope scope) const = 0;
  virtual double broadcast_s(int64_t bytes, int ranks, LinkScope scope) const = 0;

  // ---- where the answers come from (`moetron plan --explain`, StepTrace) ----
  // While a note is attached, each answer writes its source into it (the profile's table and how
  // the size was read, or the roofline); nullptr detaches. A model answering through another
  // (a fallback) attaches the note to that one too. One pricing walk at a time per model.
  virtual void attach_source_note(std::string* note) const { note_ = note; }

 protected:
  bool noting() const { return note_ != nullptr; }  // building a note's text costs: only then
  void note_source(const std::string& text) const {
    if (note_ != nullptr) *note_ = text;
  }
  // A fixed text: no std::string is made unless a note is attached (the pricing walk asks
  // millions of times when it ranks a large cluster's plans).
  void note_source(const char* text) const {
    if (note_ != nullptr) *note_ = text;
  }

 private:
  mutable std::string* note_ = nullptr;
};

}  // namespace moetron
