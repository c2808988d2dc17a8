// --plan strings ("pp=2,tp=4,dp=1,ep=2", "auto", ...).
#include "fuzz_common.hpp"
#include "moetron/parallel/plan.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moetron;
  fuzz::expect_only_errors([&] { (void)parse_plan(fuzz::text_of(data, size)).to_string(); });
  return 0;
}
