// Finding out early (before a long run) that an output file cannot be written at all; writing it
// so that readers never see half of it is moetron/core/atomic_file.hpp (write_atomically).
#pragma once
#include <string>

#include "moetron/core/atomic_file.hpp"

namespace moetron {

// Creates and removes a probe file beside `path`. Throws Error naming the directory when it is
// missing, not a directory, or not writable, and naming `path` when it is itself a directory.
void check_output_writable(const std::string& path);

}  // namespace moetron
