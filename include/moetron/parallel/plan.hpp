// Plan: how the ranks of a job share one model. pp pipeline stages, each of tp x dp ranks:
// attention and dense layers run tp-way tensor parallel inside dp replicas; the routed experts of
// a stage are split into ep equal sets, and the m = tp*dp/ep ranks that hold the same set each
// keep 1/m of those experts' intermediate dimension.
//
// Rank order keeps tensor-parallel peers adjacent (they talk every layer, so they should share a
// node): rank = (pp_idx * dp + dp_idx) * tp + tp_idx.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/core/range.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/weights.hpp"  // ShardSpec
#include "moetron/parallel/memory_need.hpp"

namespace moetron {

// The most micro-batches a plan may ask for (mb=).
constexpr int kMaxMicroBatches = 4096;

struct Plan {
  int pp = 1, tp = 1, dp = 1, ep = 1;
  // Micro-batches a step is split into through the pipeline (`mb=` of --plan); 0: one a stage,
  // the engine's default. Only a pipeline (pp > 1) may ask for another count (plan_problem).
  int mb = 0;

  int world_size() const { return pp * tp * dp; }
  int stage_size() const { return tp * dp; }          // ranks of one pipeline stage
  int expert_shards() const { return tp * dp / ep; }  // m: ranks that share one expert set
  int micro_batch_count() const { return mb > 0 ? mb : pp; }
  std::string to_string() const;                      // "pp=2,tp=2,dp=2,ep=4", ",mb=M" unless M = pp
  bool operator==(const Plan& o) const {
    return pp == o.pp && tp == o.tp && dp == o.dp && ep == o.ep && micro_batch_count() == o.micro_batch_count();
  }
  bool operator!=(const Plan& o) const { return !(*this == o); }
};

// Parses "pp=P,tp=T,dp=D,ep=E[,mb=M]" (any order, omitted factors are 1, an omitted mb is pp).
// Errors name --plan and the offending token. Does not accept "auto": see resolve_plan.
Plan parse_plan(const std::string& text);

struct Coords {
  int pp = 0, dp = 0, tp = 0;
  bool operator==(const Coords& o) const { return pp == o.pp && dp == o.dp && tp == o.tp; }
};
Coords coords_of(const Plan& plan, int rank);
int rank_of(const Plan& plan, const Coords& c);
// g: this rank's position among the tp*dp ranks of its stage (dp_idx * tp + tp_idx).
inline int stage_index(const Plan& plan, const Coords& c) { return c.dp * plan.tp + c.tp; }

// Part `index` of `total` items split into `parts` contiguous pieces; when parts does not divide
// total, the first total % parts pieces get one more.
Range split_range(int64_t total, int64_t parts, int64_t index);

// One rank's place in the plan, and what it holds of the model (its ShardSpec, the one
// description of a shard that the loader and the forward read).
struct ShardLayout {
  Coords coords;
  int stage_index = 0;   // g
  int expert_set = 0;    // s = g / m: experts [s*E/ep, (s+1)*E/ep)
  int expert_shard = 0;  // j = g % m: columns [j*I/m, (j+1)*I/m) of each held expert
  int expert_shards = 1; // m
  ShardSpec shard;
};

// The first reason `plan` cannot shard `config` (world size aside), or "" when it can.
std::string plan_problem(const Plan& plan, const ModelConfig& config);
// The first reason the CUDA kernels cannot run a plan that plan_problem accepts (a rank's slice of
// each expert must be a multiple of kCudaExpertWidthMultiple columns), or "" when they can.
std::string cuda_plan_problem(const Plan& plan, const ModelConfig& config);
// Throws Error with that reason when `backend` is "cuda" and its kernels cannot run the plan:
// an explicit --plan is refused before any weight is read, on every rank alike.
void validate_plan_for_backend(const Plan& plan, const ModelConfig& config, const std::string& backend);
// Throws Error with the reason when the plan cannot shard the config.
ShardLayout layout_for(const Plan& plan, const ModelConfig& config, int rank);

// Whether global layer `layer` of config routes to experts.
bool is_moe_layer(const ModelConfig& config, int64_t layer);

// Parameters of the weights a rank with this shard holds (what the loader will upload); the
// bytes they take depend on the backend (memory_need.hpp).
int64_t weight_shard_params(const ModelConfig& config, const ShardSpec& shard);

// Throws one Error, naming --plan, for the first thing that makes the plan impossible on
// world_size ranks, each with `memory` (memory_problem; bytes_per_rank 0: not checked).
void validate_plan(const Plan& plan, const ModelConfig& config, int world_size, const MemoryBudget& memory);

// One log line: what `rank` holds.
std::string describe(const Plan& plan, const ShardLayout& layout, int rank);

// Every plan valid for config on world_size ranks (memory not considered), ordered by
// (pp, tp, dp, ep), each with the engine's default micro-batches (mb unset: pp). The predictor
// tries other counts on pipelines (predict_plans).
std::vector<Plan> enumerate_plans(const ModelConfig& config, int world_size);

// The plan `--plan auto` picks until the predictor ranks plans by cost. Among the valid plans
// whose largest rank fits `memory` (memory_need.hpp; bytes_per_rank 0: unknown, all fit), in
// order of preference:
//   1. fewest pipeline stages: a stage boundary adds latency and bubbles; use pp only when
//      nothing fits otherwise;
//   2. tensor parallelism inside a node: tp <= ranks_per_node when such a plan exists;
//   3. smallest tp: dp replicas run attention without an all-reduce per layer;
//   4. largest ep: whole experts per rank (no intermediate shards) keep expert GEMMs large.
// Throws Error when no plan is valid or none fits, saying why.
Plan choose_auto_plan(const ModelConfig& config, int world_size, const MemoryBudget& memory, int ranks_per_node);

// Whether the --plan text asks for the automatic choice ("auto", spaces around allowed).
bool is_auto_plan(const std::string& text);

// The --plan option: "auto" (choose_auto_plan) or an explicit plan, validated either way.
Plan resolve_plan(const std::string& text, const ModelConfig& config, int world_size,
                  const MemoryBudget& memory, int ranks_per_node);

}  // namespace moetron
