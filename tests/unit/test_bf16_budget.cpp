// How far bf16 storage alone (float32 math, every activation rounded to bf16) moves each HF
// fixture from Hugging Face's float32 logits. The GPU model test holds the CUDA backend to
// this budget; here it is checked to stay small enough to be meaningful.
#include <gtest/gtest.h>

#include <cstdio>

#include "../common/bf16_emulation.hpp"
#include "../common/hf_fixture.hpp"

namespace moetron {
namespace {

class Bf16Budget : public ::testing::TestWithParam<std::string> {};

TEST_P(Bf16Budget, StaysCloseToHuggingFace) {
  const auto fx = test::HfFixture::load(GetParam());
  test::Bf16StorageOps ops;
  const auto logits = test::run_teacher_forced(ops, fx, test::all_prompts(fx));
  double worst = 0;
  for (size_t i = 0; i < logits.size(); ++i)
    for (size_t s = 0; s < logits[i].size(); ++s)
      worst = std::max(worst, test::relative_error(logits[i][s].data(), fx.prompts[i].step_logits[s]));
  std::printf("[ bf16     ] %s: bf16 storage moves the logits by at most %.3g (relative)\n", GetParam().c_str(), worst);
  EXPECT_LT(worst, 0.25);
}

INSTANTIATE_TEST_SUITE_P(Families, Bf16Budget, ::testing::ValuesIn(test::fixture_families()));

}  // namespace
}  // namespace moetron
