// A whole .safetensors file (8-byte length, JSON header, data): opened, listed, every tensor read.
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.hpp"
#include "moetron/model/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moetron;
  // One in-memory file, rewritten for each input (the reader maps a path).
  static const int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  fuzz::expect_only_errors([&] {
    auto file = SafetensorsFile::open(path);
    volatile uint8_t sink = 0;
    for (const std::string& name : file->names()) {
      const TensorView v = file->get(name);
      const auto* bytes = static_cast<const uint8_t*>(v.row_data(0));
      const size_t n = static_cast<size_t>(v.numel()) * dtype_size(v.dtype);
      for (size_t i = 0; i < n; i += 4096) sink = sink + bytes[i];
      if (n > 0) sink = sink + bytes[n - 1];
    }
  });
  return 0;
}
