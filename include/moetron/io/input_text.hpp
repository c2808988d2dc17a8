// Reading small input files (config.json, shard indexes, prompts) without trusting them: the
// file type is checked without blocking (a FIFO or device is refused, never waited on), the
// size is bounded before anything is allocated, and JSON objects may not repeat a key (strict
// readers of these formats refuse that, rather than silently keep the last value).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace moetron {

// The whole of a regular file of at most max_bytes. Errors are "PATH: cannot read WHAT: why"
// ("it is a directory", "it is a FIFO, not a regular file", "it is N bytes, more than ...").
std::string read_regular_file(const std::string& path, const std::string& what, uint64_t max_bytes);

// Parses [first, last) as JSON; a syntax error or a key repeated in any object is an Error
// starting with `where`.
nlohmann::json parse_json_strict(const char* first, const char* last, const std::string& where);
inline nlohmann::json parse_json_strict(const std::string& text, const std::string& where) {
  return parse_json_strict(text.data(), text.data() + text.size(), where);
}

}  // namespace moetron
