#include "moetron/engine/host_step_bench.hpp"

#include <algorithm>
#include <vector>

#include "moetron/engine/scheduler.hpp"
#include "moetron/parallel/plan.hpp"

namespace moetron {

// The host's bookkeeping of one forward, as Engine::run_micro_batch does it before and after
// the model's ops: reset_temps (the last step's scratch), build_batch_layout of the step's
// sequences, upload_batch, and the routing of the step counted over the stage's layers
// (ModelForward::count_routing: Ops::accumulate_routing on records of the forward's shapes).
// Decode-shaped: `tokens` sequences of one token each at the smallest context swept; layers:
// each stage's count for pp = 1, 2, 4, 8.
void time_host_step(Ops& ops, const ComputeBench& b, SeriesTable& table) {
  const ModelConfig& c = *b.config;
  constexpr int64_t kBlockSize = 16;  // the engine's default --block-size
  const int64_t E = std::max<int64_t>(c.num_experts, 1), k = std::max<int64_t>(c.top_k, 1);
  std::vector<int64_t> tokens = b.sizes.tokens;
  tokens.insert(tokens.end(), b.sizes.decode_batch.begin(), b.sizes.decode_batch.end());
  std::sort(tokens.begin(), tokens.end());
  tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
  const int64_t max_t = tokens.back(), context = std::max<int64_t>(b.sizes.contexts.front(), 1);
  const int64_t blocks = (context + kBlockSize - 1) / kBlockSize;
  std::vector<Sequence> seqs(static_cast<size_t>(max_t));
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].prompt.assign(static_cast<size_t>(context - 1), 1);
    seqs[i].output = {2};  // position context - 1 is the last token produced
    for (int64_t j = 0; j < blocks; ++j) seqs[i].blocks.push_back(static_cast<int32_t>(static_cast<int64_t>(i) * blocks + j));
  }
  std::vector<int64_t> layer_counts;
  for (int64_t pp : {1, 2, 4, 8})
    if (pp <= c.num_layers)
      for (int64_t stage : {int64_t{0}, pp - 1}) layer_counts.push_back(split_range(c.num_layers, pp, stage).size());
  std::sort(layer_counts.begin(), layer_counts.end());
  layer_counts.erase(std::unique(layer_counts.begin(), layer_counts.end()), layer_counts.end());
  for (int64_t layers : layer_counts) {
    std::vector<int32_t> ids(static_cast<size_t>(layers * max_t * k));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(static_cast<int64_t>(i) % E);
    Tensor records = ops.alloc(DType::I32, {layers, max_t, k});
    ops.copy_from_host(records, ids.data());
    Tensor counts = ops.alloc(DType::I64, {layers, E}), pairs = ops.alloc(DType::I64, {layers, E, E});
    ops.fill_zero(counts);
    ops.fill_zero(pairs);
    for (int64_t t : tokens) {
      std::vector<ScheduledSeq> group;
      for (int64_t i = 0; i < t; ++i) group.push_back({&seqs[static_cast<size_t>(i)], context - 1, 1, false, true});
      TimedWork work;
      work.call = [&] {
        ops.reset_temps();
        (void)ops.upload_batch(build_batch_layout(group, kBlockSize));
        ops.accumulate_routing(records, t, counts, pairs);
      };
      work.wait = [&] { ops.sync(); };
      table.add({E, k, layers}, t, measure(work, b.timing));
    }
    ops.reset_temps();
  }
}

}  // namespace moetron
