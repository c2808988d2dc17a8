// ProfileCostModel: a CostModel answering from what `moetron bench` measured (a HardwareProfile),
// interpolated between the measured sizes by TimeCurve / TimeSurface (bench/time_curve.hpp).
//
// Kernel times. The profile holds per-call times of back-to-back calls (a kernel's own time plus
// the gap to the next), and the per-call time of the smallest kernel (kernel_gap: eager launch,
// and per graph node where the backend records graphs). A compute answer is the measured time
// less a gap (never below 0), and kernel_overhead_s is the gap, so the predictor's sum over a
// step gives back the measured per-call times. Which gap: in a format-3 profile of a backend that
// records, calls shorter than a launch interval were timed as nodes of a replayed recording and
// longer ones hide their launches, so every per-call time is the kernel plus a graph node's gap,
// and that is taken off. Older profiles timed everything eagerly and take off the eager launch
// gap; that priced every kernel shorter than a launch at zero (perf/PREDICTOR.md, fourteenth
// session), so measure such profiles again. The sampling table's calls wait for the host (the
// ids' copy): it keeps the eager gap.
//
// Shapes not measured (a tp degree the bench left out, heads of another plan): the nearest
// measured shape by work (n * k for GEMMs, hidden * columns for experts, heads * head_dim for
// attention), scaled by the ratio of work. The grouped expert GEMM is measured as one
// Ops::moe_experts call (count, permute, gate/up and down GEMMs, weighted sum); the predictor asks
// for its two GEMMs, which get 2/3 and 1/3 of it (their FLOPs). A call of at most
// kExpertGemvMaxTokens tokens answers from the GEMV path's table (moe_experts_gemv) alone, a
// larger one from the tile path's (moe_experts) alone; a path the profile lacks for every shape
// (a profile without GEMV points) answers from `fallback`, never from the other path.
//
// Collectives answer from the table of the same operation, group size and scope (inside one node
// or across nodes); any other group falls back to `fallback` (the roofline figures of --hardware
// and --interconnect in `moetron plan`), as does every table the profile lacks.
#pragma once
#include <map>
#include <tuple>
#include <vector>

#include "moetron/bench/profile.hpp"
#include "moetron/bench/time_curve.hpp"
#include "moetron/predict/cost_model.hpp"

namespace moetron {

class ProfileCostModel : public CostModel {
 public:
  // `fallback` must outlive this object.
  ProfileCostModel(const HardwareProfile& profile, const CostModel& fallback);

  double gemm_s(int64_t m, int64_t n, int64_t k) const override;
  double grouped_gemm_s(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k,
                        int64_t call_tokens, bool by_gemms = false) const override;
  double attention_s(int64_t rows, int64_t context, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                     bool prefill) const override;
  double memory_bound_s(int64_t bytes) const override;
  // From the attention_inputs and sampling tables; a profile without them (made before they were
  // measured) prices them as the base class does, as one memory-bound kernel.
  double attention_inputs_s(int64_t rows, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                            int64_t bytes) const override;
  double sampling_s(int64_t rows, int64_t vocab, int64_t bytes) const override;
  // From the host_step table, as measured (not a kernel: no gap taken off); a profile without it
  // prices the host's bookkeeping at zero, as before it was measured.
  double host_step_s(int64_t tokens, int64_t layers, int64_t experts, int64_t top_k) const override;
  // From the hbm_copy table like any kernel (less the launch gap); a profile with one large copy
  // only (made before the small ones were measured) at that copy's rate, in proportion to the
  // bytes (the caller adds the gap); the fallback's without the table.
  double copy_s(int64_t bytes) const override;
  double kernel_overhead_s(bool in_graph) const override;
  ExpertGemmRule expert_gemm_rule() const override { return expert_gemm_rule_; }
  double launch_s(LaunchFamily family) const override;
  // Notes come from this model's tables or, where it answers from `fallback`, from that one.
  void attach_source_note(std::string* note) const override;

  double allreduce_s(int64_t bytes, int ranks, LinkScope scope) const override;
  double alltoall_s(int64_t bytes_per_rank, int ranks, LinkScope scope) const override;
  double send_recv_s(int64_t bytes, LinkScope scope) const override;
  double broadcast_s(int64_t bytes, int ranks, LinkScope scope) const override;

  // Which answers come from the profile and which from the fallback, for logs and reports.
  std::string describe() const;

 private:
  // Measured shapes of one kind, each with its work, found exactly or by the nearest work.
  template <class Table>
  struct Shapes {
    struct Entry {
      std::vector<int64_t> key;
      double work;
      Table table;
    };
    std::vector<Entry> entries;
    // The entry for `key`, or the nearest by work; *scale = work / the entry's work.
    const Entry* lookup(const std::vector<int64_t>& key, double work, double* scale) const;
  };
  // "TABLE [key]" or "TABLE nearest [key] x scale", then how the sizes were read: a note's text.
  template <class Entry>
  void note_entry(const char* table, const Entry& entry, double scale, const std::string& reading) const;
  double own_time(double measured_s) const;
  // The table of that collective, group and scope (noting how `bytes` reads it), or nullptr.
  const TimeCurve* collective(const TableSpec& spec, int ranks, LinkScope scope, int64_t bytes) const;

  const CostModel& fallback_;
  Shapes<TimeCurve> gemm_;
  // key hidden, expert_cols; surface over experts. One per kernel path: a call answers from its
  // path's points only (interpolating across the switch priced GEMV calls as tiles). The
  // moe_experts table holds both the tiles' and (CUDA, prefill-sized) the per-expert GEMMs'
  // points; each is filed by the path its bench call took (expert_call_by_gemms).
  Shapes<TimeSurface> experts_, experts_gemv_, experts_gemms_;
  int64_t gemm_experts_ = 1;  // the experts active in experts_gemms_'s points (the model's all)
  Shapes<TimeSurface> decode_, prefill_;  // key q_heads, kv_heads, head_dim; surface over context
  std::vector<TimeCurve> memory_;
  Shapes<TimeCurve> attention_inputs_;  // key q_heads, kv_heads, head_dim; by tokens
  Shapes<TimeCurve> sampling_;          // key vocab; by rows
  Shapes<TimeSurface> host_step_;       // key experts, top_k; surface over layers; by tokens
  double eager_gap_s_ = -1, graph_gap_s_ = -1;  // -1: not measured
  std::map<int64_t, double> launch_s_;          // launch_cost's median by LaunchFamily
  double own_less_s_ = 0;  // what own_time takes off a measured per-call time (see the top)
  TimeCurve copy_;                               // hbm_copy, by bytes read + written
  double copy_s_per_byte_ = -1;                  // a one-point hbm_copy's rate; -1: none
  std::map<std::tuple<std::string, int, bool>, TimeCurve> collectives_;
  std::string origin_;
  ExpertGemmRule expert_gemm_rule_ = ExpertGemmRule::kHostCost;  // expert_gemm_rule_of_profile
};

}  // namespace moetron
