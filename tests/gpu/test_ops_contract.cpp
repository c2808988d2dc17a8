// The Ops contract's checks on the CUDA backend: the table the CPU unit tests run
// (tests/common/ops_contract_cases.hpp), with the same messages (the backend's device and
// activation dtype in them come from the backend).
#include "../common/ops_contract_cases.hpp"
#include "../unit/error_of.hpp"
#include "gpu_test_util.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaContract = GpuVsCpu;

TEST_F(CudaContract, EveryBrokenCallNamesTheOpAndArgumentOnCuda) {
  for (const test::ContractCase& c : test::ops_contract_cases()) {
    test::BrokenCall broken = c.make(gpu());
    EXPECT_EQ(test::error_of(broken.call), broken.message) << c.name;
  }
}

// A limit of the CUDA kernels, checked by the backend after the contract passed.
TEST_F(CudaContract, UnsupportedHeadDimNamesTheBackend) {
  BatchTensors b;
  b.num_tokens = 1;
  b.num_seqs = 1;
  b.max_blocks_per_seq = 1;
  b.block_size = 4;
  for (Tensor* t : {&b.positions, &b.kv_lens}) *t = gpu().alloc(DType::I32, {1});
  b.query_start = gpu().alloc(DType::I32, {2});
  b.block_tables = gpu().alloc(DType::I32, {1, 1});
  Tensor q = gpu().alloc(DType::BF16, {1, 4 * 24}), out = gpu().alloc(DType::BF16, {1, 4 * 24});
  KvCache cache{gpu().alloc(DType::BF16, {1, 4, 4, 24}), gpu().alloc(DType::BF16, {1, 4, 4, 24})};
  EXPECT_EQ(test::error_of([&] { gpu().attention(q, cache, b, 4, 4, 24, 0.2f, out); }),
            "attention: head_dim 24 is not supported on CUDA (16, 32, 64, 96 or 128)");
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
