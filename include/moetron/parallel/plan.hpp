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

#include "moetron/model/config.hpp"

namespace moetron {

struct Plan {
  int pp = 1, tp = 1, dp = 1, ep = 1;

  int world_size() const { return pp * tp * dp; }
  int stage_size() const { return tp * dp; }          // ranks of one pipeline stage
  int expert_shards() const { return tp * dp / ep; }  // m: ranks that share one expert set
  std::string to_string() const;                      // "pp=2,tp=2,dp=2,ep=4"
  bool operator==(const Plan& o) const {
    return pp == o.pp && tp == o.tp && dp == o.dp && ep == o.ep;
  }
  bool operator!=(const Plan& o) const { return !(*this == o); }
};

// Parses "pp=P,tp=T,dp=D,ep=E" (any order, omitted factors are 1). Errors name --plan and the
// offending token. Does not accept "auto": see resolve_plan.
Plan parse_plan(const std::string& text);

struct Coords {
  int pp = 0, dp = 0, tp = 0;
  bool operator==(const Coords& o) const { return pp == o.pp && dp == o.dp && tp == o.tp; }
};
Coords coords_of(const Plan& plan, int rank);
int rank_of(const Plan& plan, const Coords& c);
// g: this rank's position among the tp*dp ranks of its stage (dp_idx * tp + tp_idx).
inline int stage_index(const Plan& plan, const Coords& c) { return c.dp * plan.tp + c.tp; }

// A half-open range [begin, end) of indices.
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool contains(int64_t i) const { return i >= begin && i < end; }
  bool operator==(const Range& o) const { return begin == o.begin && end == o.end; }
};
// Part `index` of `total` items split into `parts` contiguous pieces; when parts does not divide
// total, the first total % parts pieces get one more.
Range split_range(int64_t total, int64_t parts, int64_t index);

// The vocab-parallel LM head pads the vocabulary to tp * vocab_shard_rows(vocab, tp) rows, as
// production engines do, so that any vocabulary splits over any tp: every tp rank holds
// ceil(vocab / tp) rows (the all-gather of its logits needs equal slices), and rank `index`'s
// real tokens are vocab_shard(vocab, tp, index) = [index * rows, (index + 1) * rows) cut at vocab:
// fewer on the last ranks, possibly none. The rows past them are zero and their logits are
// never gathered into a row (ModelForward::logits_device).
int64_t vocab_shard_rows(int64_t vocab_size, int64_t tp);
Range vocab_shard(int64_t vocab_size, int64_t tp, int64_t index);

// What one rank holds of the model.
struct ShardLayout {
  Coords coords;
  int stage_index = 0;  // g
  Range layers;         // this stage's layers
  Range q_heads;
  Range kv_heads;
  bool kv_replicated = false;   // tp > kv heads: tp / kv_heads ranks hold the same kv head
  Range dense_columns;          // dense-MLP intermediate columns (tp-way)
  Range shared_expert_columns;  // shared-expert intermediate columns (tp-way); empty if none
  int expert_set = 0;           // s = g / m
  Range experts;                // [s*E/ep, (s+1)*E/ep)
  int expert_shard = 0;         // j = g % m
  int expert_shards = 1;        // m
  Range expert_columns;         // [j*I/m, (j+1)*I/m) of each held expert
  Range vocab;                  // vocab-parallel LM head: the real tokens held (vocab_shard)
  int64_t vocab_rows = 0;       // LM head rows held, padding included (vocab_shard_rows)
  bool first_stage = false;     // holds the embedding
  bool last_stage = false;      // holds the final norm and the LM head
};

// The first reason `plan` cannot shard `config` (world size aside), or "" when it can.
std::string plan_problem(const Plan& plan, const ModelConfig& config);
// Throws Error with the reason when the plan cannot shard the config.
ShardLayout layout_for(const Plan& plan, const ModelConfig& config, int rank);

// bf16 bytes of the weights a rank with this layout holds (what the loader will upload).
int64_t weight_shard_bytes(const ModelConfig& config, const ShardLayout& layout);
// The largest weight_shard_bytes over all ranks of the plan.
int64_t max_weight_shard_bytes(const Plan& plan, const ModelConfig& config);

// Throws one Error, naming --plan, for the first thing that makes the plan impossible on
// world_size ranks of memory_bytes_per_rank each (0: memory unknown, not checked).
void validate_plan(const Plan& plan, const ModelConfig& config, int world_size,
                   int64_t memory_bytes_per_rank);

// One log line: what `rank` holds.
std::string describe(const Plan& plan, const ShardLayout& layout, int rank);

// Every plan valid for config on world_size ranks (memory not considered), ordered by
// (pp, tp, dp, ep).
std::vector<Plan> enumerate_plans(const ModelConfig& config, int world_size);

// The plan `--plan auto` picks until the predictor ranks plans by cost. Among the valid plans
// whose weights fit memory_bytes_per_rank (0: unknown, all fit), in order of preference:
//   1. fewest pipeline stages: a stage boundary adds latency and bubbles; use pp only when the
//      weights do not fit otherwise;
//   2. tensor parallelism inside a node: tp <= ranks_per_node when such a plan exists;
//   3. smallest tp: dp replicas run attention without an all-reduce per layer;
//   4. largest ep: whole experts per rank (no intermediate shards) keep expert GEMMs large.
// Throws Error when no plan is valid or none fits, saying why.
Plan choose_auto_plan(const ModelConfig& config, int world_size, int64_t memory_bytes_per_rank,
                      int ranks_per_node);

// The --plan option: "auto" (choose_auto_plan) or an explicit plan, validated either way.
Plan resolve_plan(const std::string& text, const ModelConfig& config, int world_size,
                  int64_t memory_bytes_per_rank, int ranks_per_node);

}  // namespace moetron
