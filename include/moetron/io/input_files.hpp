// Keeping a run's outputs off its inputs: an output path that names an input through any
// spelling ("..", ".", symbolic or hard links) would destroy that input when written.
#pragma once
#include <string>
#include <vector>

namespace moetron {

// Every regular file directly in `dir` (config.json, the shards, the index), as "dir/name";
// empty when `dir` cannot be listed (reading it later says why).
std::vector<std::string> files_in_directory(const std::string& dir);

// Throws Error naming both paths when `out` exists and is the same file (device and inode) as
// any of `inputs`. Inputs that do not exist are skipped.
void check_output_not_input(const std::string& out, const std::vector<std::string>& inputs);

}  // namespace moetron
