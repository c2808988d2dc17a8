// Writing an output file so that readers never see half of it, and finding out early (before a
// long run) that it cannot be written at all.
#pragma once
#include <functional>
#include <string>

namespace moetron {

// Creates and removes a probe file beside `path`. Throws Error naming the directory when it is
// missing, not a directory, or not writable, and naming `path` when it is itself a directory.
void check_output_writable(const std::string& path);

// Calls write(tmp) with tmp = "<path>.tmp.<pid>", flushes tmp to disk and renames it to `path`
// (atomic on POSIX file systems). On any failure tmp is removed and an Error names `path`.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

}  // namespace moetron
