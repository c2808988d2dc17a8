// RooflineCostModel: a CostModel from a handful of hardware figures, for clusters that are not at
// hand (`moetron plan`) and for tests. Every answer is a floor the hardware cannot beat:
//   kernels      max(FLOPs / gemm_flops, bytes / hbm_bytes_per_s), or where a cache rate is given
//                max(FLOPs / gemm_flops, min(bytes, cache) / cache rate + the rest / hbm rate)
//   all-reduce   ceil(log2 n) * latency + 2 (n - 1) / n * bytes / bus bandwidth
//   all-to-all   latency + (n - 1) / n * bytes_per_rank / bus bandwidth
//   send/recv    latency + bytes / bus bandwidth
//   broadcast    ceil(log2 n) * latency + bytes / bus bandwidth
// "Bus bandwidth" is what nccl-tests reports as busbw for a group of that scope, per rank, so the
// formulas above are exactly nccl-tests' definitions: give the figure measured (or promised) for
// groups inside a node and for groups that span nodes. ceil(log2 n) message latencies is the
// least any all-reduce or broadcast algorithm needs. Element sizes are bf16 (2 bytes).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/predict/cost_model.hpp"

namespace moetron {

struct LinkFigures {
  double bytes_per_s = 0;  // bus bandwidth per rank (nccl-tests' busbw)
  double latency_s = 0;    // one message's latency (a hop)
};

struct HardwareFigures {
  std::string name;              // the preset's name, "+ overrides" when edited
  double gemm_flops = 0;         // dense bf16 GEMM, FLOP/s (the best large GEMM measured)
  double hbm_bytes_per_s = 0;    // device memory, bytes read + written per second (a copy)
  double launch_s = 0;           // gap between two eagerly launched kernels
  double graph_node_s = 0;       // gap between two kernels of a recorded graph
  LinkFigures intra, inter;      // groups inside one node, groups that span nodes
  int64_t memory_bytes = 0;      // device memory per rank
  int64_t reserved_bytes = 0;    // taken before the model (runtime context, library workspaces)
  // The last-level cache (the GPU's L2): its size, and the rate a kernel may read and write
  // through it (0: not modelled, every byte at hbm_bytes_per_s). Only the ceiling sets the rate
  // (ceiling_figures, plan_costs.hpp): up to cache_bytes of a kernel's bytes may move at it.
  int64_t cache_bytes = 0;
  double cache_bytes_per_s = 0;
};

// Preset names, for help texts and errors: "h200, h100, a100, cpu".
std::vector<std::string> hardware_preset_names();
// The named preset; an Error naming `option` lists the known names. Each preset says where its
// figures come from (hardware_presets in the .cpp).
HardwareFigures hardware_preset(const std::string& name, const std::string& option = "--hardware");

// "intra=GBps:us,inter=GBps:us" (either part may be left out): bus bandwidth in GB/s (1e9 bytes)
// and latency in microseconds. Errors name `option` and the part.
void apply_interconnect(HardwareFigures& figures, const std::string& text,
                        const std::string& option = "--interconnect");
// "key=value,...": gemm_tflops, hbm_tbps, launch_us, graph_node_us, memory_gib, reserved_gib,
// cache_mib.
// Errors name `option` and the key.
void apply_hardware_overrides(HardwareFigures& figures, const std::string& text,
                              const std::string& option = "--hardware-set");
// One line for logs and reports: "h200: 751 TFLOP/s, 4.18 TB/s HBM, ...".
std::string describe(const HardwareFigures& figures);

// What the roofline counts of one kernel: its FLOPs and the bytes it must move (bf16 elements).
// The same counts price a kernel (RooflineCostModel) and read a profile's points as rates
// (ceiling_figures, plan_costs.hpp).
struct KernelWork {
  double flops = 0, bytes = 0;
};
// The message latencies the roofline charges an all-reduce or a broadcast of `ranks` ranks:
// ceil(log2 ranks), the least any algorithm needs.
int collective_hops(int ranks);
// A dense GEMM [m x k] x [k x n]: the three operands read or written once.
KernelWork gemm_work(int64_t m, int64_t n, int64_t k);
// A grouped expert GEMM: each active expert's [k x n] weights read once, each row read and its
// output written once.
KernelWork grouped_gemm_work(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k);
// Paged attention (RooflineCostModel::attention_s says what each shape reads).
KernelWork attention_work(int64_t rows, int64_t context, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                          bool prefill);

class RooflineCostModel : public CostModel {
 public:
  // Throws Error when a rate is not positive or a time is negative.
  explicit RooflineCostModel(HardwareFigures figures);
  const HardwareFigures& figures() const { return f_; }
  bool prices_floors() const override { return true; }

  double gemm_s(int64_t m, int64_t n, int64_t k) const override;
  // The same bound on every kernel path (the rows as given): call_tokens does not enter it.
  double grouped_gemm_s(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k,
                        int64_t call_tokens, bool by_gemms = false) const override;
  // Prefill: `rows` query tokens of prompts `context` long, causal (each query sees the tokens
  // before it: context / 2 on average), every K/V row read once. Decode: each row reads its
  // `context` cached K/V rows.
  double attention_s(int64_t rows, int64_t context, int64_t q_heads, int64_t kv_heads,
                     int64_t head_dim, bool prefill) const override;
  double memory_bound_s(int64_t bytes) const override;
  double kernel_overhead_s(bool in_graph) const override;

  double allreduce_s(int64_t bytes, int ranks, LinkScope scope) const override;
  double alltoall_s(int64_t bytes_per_rank, int ranks, LinkScope scope) const override;
  double send_recv_s(int64_t bytes, LinkScope scope) const override;
  double broadcast_s(int64_t bytes, int ranks, LinkScope scope) const override;

 private:
  double kernel_s(const KernelWork& work) const;
  const LinkFigures& link(LinkScope scope) const;
  HardwareFigures f_;
};

}  // namespace moetron
