// Shared by the CPU and GPU tests: the Hugging Face fixtures of tests/fixtures (checkpoints made
// with HF's own classes and HF's float32 outputs, by tests/hf/make_fixtures.py), and a runner
// that feeds their prompts through the model's forward on any backend.
#pragma once
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bf16_emulation.hpp"
#include "fixtures_root.hpp"
#include "moetron/comm/communicator.hpp"
#include "moetron/engine/scheduler.hpp"
#include "moetron/model/forward.hpp"
#include "moetron/model/checkpoint_source.hpp"

namespace moetron::test {

struct HfPrompt {
  std::vector<int32_t> prompt, greedy;
  std::vector<std::vector<float>> step_logits;  // the float32 logits that chose greedy[s]
};

struct HfFixture {
  std::string dir;
  ModelConfig config;
  std::vector<HfPrompt> prompts;

  static HfFixture load(const std::string& family) {
    HfFixture f;
    f.dir = fixture_dir(family);
    f.config = load_model_config(f.dir + "/config.json");
    std::ifstream in(f.dir + "/reference.json");
    const nlohmann::json j = nlohmann::json::parse(in);
    for (const auto& p : j.at("prompts")) {
      HfPrompt hp;
      hp.prompt = p.at("prompt_tokens").get<std::vector<int32_t>>();
      hp.greedy = p.at("greedy_tokens").get<std::vector<int32_t>>();
      hp.step_logits = p.at("step_logits").get<std::vector<std::vector<float>>>();
      f.prompts.push_back(std::move(hp));
    }
    return f;
  }
};

inline const std::vector<std::string>& fixture_families() {
  static const std::vector<std::string> f = {"mixtral", "qwen2_moe", "olmoe", "qwen3_moe"};
  return f;
}

// max |got - want| / max |want|
inline double relative_error(const float* got, const std::vector<float>& want) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    ref = std::max(ref, std::fabs(static_cast<double>(want[i])));
  }
  return diff / ref;
}

// The gap between the two largest logits, relative to the largest magnitude: how safely the
// greedy choice is decided.
inline double top2_margin(const std::vector<float>& logits) {
  std::vector<float> v = logits;
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
  double ref = 0;
  for (float x : logits) ref = std::max(ref, std::fabs(static_cast<double>(x)));
  return (v[0] - v[1]) / ref;
}

// Runs the fixture's prompts `which` as one batch through prefill and then decode, feeding HF's
// greedy tokens back (teacher forcing, so one early difference cannot change every later
// step). Returns logits[i][step] for prompt which[i]. With `router_gaps` and ops that record
// them (Bf16StorageOps), also the smallest router gap of each prompt's tokens at each step.
inline std::vector<std::vector<std::vector<float>>> run_teacher_forced(
    Ops& ops, const HfFixture& fx, const std::vector<size_t>& which, int64_t block_size = 4,
    std::vector<std::vector<float>>* router_gaps = nullptr) {
  const ShardSpec shard = full_shard(fx.config);
  auto source = open_checkpoint_source(fx.dir);
  const ModelWeights weights = load_weights(*source, fx.config, shard, ops);
  auto tp = make_self_communicator();
  ForwardContext ctx;
  ctx.config = &fx.config;
  ctx.ops = &ops;
  ctx.shard = &shard;
  ctx.weights = &weights;
  ctx.tp = tp.get();
  ctx.max_tokens = 64;
  const int64_t kv_blocks = 64;
  ModelForward forward(ctx, kv_blocks, block_size);
  std::vector<Sequence> seqs(which.size());
  int32_t next_block = static_cast<int32_t>(kv_blocks) - 1;  // from the top, out of order
  for (size_t i = 0; i < which.size(); ++i) {
    const HfPrompt& p = fx.prompts[which[i]];
    seqs[i].prompt = p.prompt;
    const int64_t tokens = static_cast<int64_t>(p.prompt.size() + p.greedy.size());
    for (int64_t b = 0; b < (tokens + block_size - 1) / block_size; ++b) seqs[i].blocks.push_back(next_block--);
  }
  std::vector<std::vector<std::vector<float>>> out(which.size());
  if (router_gaps != nullptr) router_gaps->assign(which.size(), {});
  auto* recorder = dynamic_cast<Bf16StorageOps*>(&ops);
  const size_t steps = fx.prompts[which[0]].greedy.size();
  for (size_t step = 0; step < steps; ++step) {
    std::vector<ScheduledSeq> group;
    for (Sequence& s : seqs) {
      const int64_t prompt = static_cast<int64_t>(s.prompt.size());
      group.push_back({&s, step == 0 ? 0 : prompt + static_cast<int64_t>(step) - 1,
                       step == 0 ? prompt : 1});
    }
    ops.reset_temps();
    const BatchLayout layout = build_batch_layout(group, block_size);
    const BatchTensors batch = ops.upload_batch(layout);
    Tensor hidden = forward.embed(batch);
    forward.run_layers(hidden, batch);
    const std::vector<float> logits = forward.logits(hidden, batch);
    const size_t V = static_cast<size_t>(fx.config.vocab_size);
    for (size_t i = 0; i < seqs.size(); ++i) {
      out[i].emplace_back(logits.begin() + static_cast<std::ptrdiff_t>(i * V),
                          logits.begin() + static_cast<std::ptrdiff_t>((i + 1) * V));
      seqs[i].output.push_back(fx.prompts[which[i]].greedy[step]);
      if (router_gaps != nullptr && recorder != nullptr) {
        const auto& gaps = recorder->router_gaps();
        float gap = INFINITY;
        for (int32_t r = layout.query_start[i]; r < layout.query_start[i + 1] && !gaps.empty(); ++r)
          gap = std::min(gap, gaps[static_cast<size_t>(r)]);
        (*router_gaps)[i].push_back(gap);
      }
    }
  }
  return out;
}

inline std::vector<size_t> all_prompts(const HfFixture& fx) {
  std::vector<size_t> all(fx.prompts.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return all;
}

}  // namespace moetron::test
