// model.safetensors.index.json: the shard index of a checkpoint folder, opened as `run` does.
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "fuzz_common.hpp"
#include "moetron/model/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moetron;
  static const std::string dir = [] {
    char tmpl[] = "/tmp/moetron-fuzz-index.XXXXXX";
    const char* made = mkdtemp(tmpl);
    return std::string(made ? made : "/tmp");
  }();
  {
    std::ofstream out(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  fuzz::expect_only_errors([&] {
    const Checkpoint c = Checkpoint::open(dir);
    (void)c.names();
  });
  return 0;
}
