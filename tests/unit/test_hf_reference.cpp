// The CPU engine against Hugging Face transformers' float32 forward, on the small random
// checkpoints in tests/fixtures (made by tests/hf/make_fixtures.py with HF's own classes).
// Each prompt is prefilled and then decoded greedily through the paged KV cache, alone and
// batched with the others; every step's logits must match HF's to 1e-4 relative (max abs
// difference over max abs logit) and every greedy token exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/comm/communicator.hpp"
#include "moetron/engine/scheduler.hpp"
#include "moetron/model/forward.hpp"
#include "moetron/model/weight_source.hpp"

namespace moetron {
namespace {

constexpr double kMaxRelativeError = 1e-4;
constexpr int64_t kBlockSize = 4;  // small, so sequences span several blocks

struct Reference {
  std::vector<int32_t> prompt, greedy;
  std::vector<std::vector<float>> step_logits;
};

std::vector<Reference> load_reference(const std::string& dir) {
  std::ifstream f(dir + "/reference.json");
  const nlohmann::json j = nlohmann::json::parse(f);
  std::vector<Reference> refs;
  for (const auto& p : j.at("prompts")) {
    Reference r;
    r.prompt = p.at("prompt_tokens").get<std::vector<int32_t>>();
    r.greedy = p.at("greedy_tokens").get<std::vector<int32_t>>();
    r.step_logits = p.at("step_logits").get<std::vector<std::vector<float>>>();
    refs.push_back(std::move(r));
  }
  return refs;
}

double relative_error(const float* got, const std::vector<float>& want) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
  }
  return max_diff / max_ref;
}

class HfReference : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::string(MOETRON_SOURCE_DIR) + "/tests/fixtures/" + GetParam();
    config_ = load_model_config(dir_ + "/config.json");
    ops_ = make_cpu_ops();
    shard_ = full_shard(config_);
    auto source = open_checkpoint_source(dir_);
    weights_ = load_weights(*source, config_, shard_, *ops_);
    tp_ = make_self_communicator();
    refs_ = load_reference(dir_);
  }

  // Runs the prompts as one batch through prefill and greedy decode, comparing every step.
  void run_batch(const std::vector<size_t>& which) {
    ForwardContext ctx;
    ctx.config = &config_;
    ctx.ops = ops_.get();
    ctx.shard = &shard_;
    ctx.weights = &weights_;
    ctx.tp = tp_.get();
    ctx.max_tokens = 64;
    ModelForward forward(ctx, /*kv_blocks=*/64, kBlockSize);
    std::vector<Sequence> seqs(which.size());
    int32_t next_block = 63;  // hand out blocks from the top, out of order
    for (size_t i = 0; i < which.size(); ++i) {
      const Reference& r = refs_[which[i]];
      seqs[i].prompt = r.prompt;
      const int64_t need = (static_cast<int64_t>(r.prompt.size() + r.greedy.size()) + kBlockSize - 1) / kBlockSize;
      for (int64_t b = 0; b < need; ++b) seqs[i].blocks.push_back(next_block--);
    }
    const size_t steps = refs_[which[0]].greedy.size();
    for (size_t step = 0; step < steps; ++step) {
      std::vector<ScheduledSeq> group;
      for (Sequence& s : seqs) {
        const int64_t start = step == 0 ? 0 : static_cast<int64_t>(s.prompt.size() + step - 1);
        group.push_back({&s, start, step == 0 ? static_cast<int64_t>(s.prompt.size()) : 1});
      }
      ops_->reset_temps();
      const BatchTensors batch = ops_->upload_batch(build_batch_layout(group, kBlockSize));
      Tensor hidden = forward.embed(batch);
      forward.run_layers(hidden, batch);
      const std::vector<float> logits = forward.logits(hidden, batch);
      for (size_t i = 0; i < seqs.size(); ++i) {
        const Reference& r = refs_[which[i]];
        const float* row = &logits[i * static_cast<size_t>(config_.vocab_size)];
        EXPECT_LT(relative_error(row, r.step_logits[step]), kMaxRelativeError)
            << GetParam() << ": prompt " << which[i] << " step " << step;
        const int32_t token = static_cast<int32_t>(
            std::max_element(row, row + config_.vocab_size) - row);
        EXPECT_EQ(token, r.greedy[step]) << GetParam() << ": prompt " << which[i] << " step " << step;
        seqs[i].output.push_back(r.greedy[step]);  // follow HF's path even after a mismatch
      }
    }
  }

  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<Ops> ops_;
  ShardSpec shard_;
  ModelWeights weights_;
  std::unique_ptr<Communicator> tp_;
  std::vector<Reference> refs_;
};

TEST_P(HfReference, EachPromptAlone) {
  for (size_t p = 0; p < refs_.size(); ++p) run_batch({p});
}

TEST_P(HfReference, AllPromptsBatched) {
  std::vector<size_t> all(refs_.size());
  for (size_t p = 0; p < all.size(); ++p) all[p] = p;
  run_batch(all);
}

INSTANTIATE_TEST_SUITE_P(Families, HfReference,
                         ::testing::Values("mixtral", "qwen2_moe", "olmoe", "qwen3_moe"));

}  // namespace
}  // namespace moetron
