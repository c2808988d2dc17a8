// Prompts files (JSON Lines), parsed and then checked against a small model's vocabulary.
#include "fuzz_common.hpp"
#include "moetron/io/prompts.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moetron;
  fuzz::expect_only_errors([&] {
    const auto specs = parse_prompts(fuzz::text_of(data, size), "prompts.jsonl");
    validate_requests(specs, 1024, 4096, "prompts.jsonl");
  });
  return 0;
}
