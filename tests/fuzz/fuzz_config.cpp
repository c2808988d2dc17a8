// config.json, as `moetron run` and `model info` read it: strict JSON, then the model fields.
#include "fuzz_common.hpp"
#include "moetron/io/input_text.hpp"
#include "moetron/model/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moetron;
  fuzz::expect_only_errors([&] {
    const std::string text = fuzz::text_of(data, size);
    const ModelConfig c = parse_model_config(parse_json_strict(text, "config.json"), "config.json");
    (void)c.summary();
    (void)c.total_params();
  });
  return 0;
}
