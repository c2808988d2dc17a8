// Refusing a large write that cannot fit before any of it is written (a partial file of a
// 256 TiB request is worse than a message).
#pragma once
#include <cstdint>
#include <string>

namespace moetron {

// Throws Error naming `dir` (its nearest existing ancestor is measured) when its file system
// has fewer than `bytes` bytes free for this user; `what` says what needs them.
void check_free_space(const std::string& dir, uint64_t bytes, const std::string& what);

}  // namespace moetron
