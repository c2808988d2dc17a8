// The Ops contract's checks on the CPU backend: every case of the shared table
// (tests/common/ops_contract_cases.hpp) throws with its exact message, and a call that keeps
// the contract reaches the backend.
#include <gtest/gtest.h>

#include "../common/ops_contract_cases.hpp"
#include "error_of.hpp"
#include "moetron/backend/cpu_ops.hpp"

namespace moetron {
namespace {

TEST(OpsContract, EveryBrokenCallNamesTheOpAndArgumentOnCpu) {
  std::unique_ptr<Ops> ops = make_cpu_ops();
  for (const test::ContractCase& c : test::ops_contract_cases()) {
    test::BrokenCall broken = c.make(*ops);
    EXPECT_EQ(test::error_of(broken.call), broken.message) << c.name;
  }
}

// The same arguments with the one fault mended pass the contract (the checks are not
// stricter than the contract says).
TEST(OpsContract, ACallThatKeepsTheContractRuns) {
  std::unique_ptr<Ops> ops = make_cpu_ops();
  Tensor x = ops->alloc(DType::F32, {3, 8}), w = ops->alloc(DType::F32, {8}),
         out = ops->alloc(DType::F32, {3, 8});
  ops->fill_zero(x);
  ops->fill_zero(w);
  EXPECT_EQ(test::error_of([&] { ops->rmsnorm(x, w, 1e-6f, out); }), "");
  // x viewed as rows of w's width: [3, 8] over a weight of 4 is [6, 4].
  Tensor w4 = ops->alloc(DType::F32, {4});
  ops->fill_zero(w4);
  EXPECT_EQ(test::error_of([&] { ops->rmsnorm(x, w4, 1e-6f, out); }), "");
}

}  // namespace
}  // namespace moetron
