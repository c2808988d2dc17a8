// The CPU engine against Hugging Face transformers' float32 forward, on the small random
// checkpoints in tests/fixtures. Each prompt is prefilled and then decoded through the paged
// KV cache, alone and batched with the others; every step's logits must match HF's to 1e-4
// relative (max abs difference over max abs logit) and every greedy token exactly.
#include <gtest/gtest.h>

#include "../common/hf_fixture.hpp"
#include "moetron/backend/cpu_ops.hpp"

namespace moetron {
namespace {

constexpr double kMaxRelativeError = 1e-4;

void expect_matches_hf(const test::HfFixture& fx, const std::vector<size_t>& which) {
  auto ops = make_cpu_ops();
  const auto logits = test::run_teacher_forced(*ops, fx, which);
  for (size_t i = 0; i < which.size(); ++i) {
    const test::HfPrompt& p = fx.prompts[which[i]];
    for (size_t step = 0; step < p.greedy.size(); ++step) {
      const std::vector<float>& row = logits[i][step];
      EXPECT_LT(test::relative_error(row.data(), p.step_logits[step]), kMaxRelativeError)
          << fx.dir << ": prompt " << which[i] << " step " << step;
      const int32_t token = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      EXPECT_EQ(token, p.greedy[step]) << fx.dir << ": prompt " << which[i] << " step " << step;
    }
  }
}

class HfReference : public ::testing::TestWithParam<std::string> {};

TEST_P(HfReference, EachPromptAlone) {
  const auto fx = test::HfFixture::load(GetParam());
  for (size_t p = 0; p < fx.prompts.size(); ++p) expect_matches_hf(fx, {p});
}

TEST_P(HfReference, AllPromptsBatched) {
  const auto fx = test::HfFixture::load(GetParam());
  expect_matches_hf(fx, test::all_prompts(fx));
}

INSTANTIATE_TEST_SUITE_P(Families, HfReference, ::testing::ValuesIn(test::fixture_families()));

}  // namespace
}  // namespace moetron
