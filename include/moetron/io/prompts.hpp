// Prompts files: JSON Lines, one request an object a line, for example
//   {"id": "q1", "prompt_tokens": [1, 2, 3], "max_new_tokens": 16, "temperature": 0.7}
// Keys: prompt_tokens (required, array of integer token ids), max_new_tokens (integer >= 1),
// id (string or integer; default: the request's 0-based index), temperature (>= 0),
// top_k (integer >= 0), top_p (in (0, 1]), seed (integer >= 0), ignore_eos (bool),
// arrival_s (seconds after the run starts, a finite number >= 0: the engine admits the request
// no earlier; default 0), after (the id of a request on an earlier line: this one arrives when
// that one finishes, a closed loop; excludes arrival_s).
// Blank lines are skipped. Any other key is an error, so a misspelt option is never ignored.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moetron {

struct RequestSpec {
  std::string id;
  std::vector<int32_t> prompt_tokens;
  int64_t max_new_tokens = -1;  // -1: not given, the engine's default applies
  std::optional<float> temperature, top_p;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  std::optional<bool> ignore_eos;
  std::optional<double> arrival_s;  // not given: at the start
  int64_t after = -1;               // index (file order) of the request it follows; -1: none
  int64_t line = 0;  // 1-based line in the prompts file, for messages
};

// Reads and checks a prompts file; every error is "FILE:LINE: ..." naming the field.
std::vector<RequestSpec> read_prompts(const std::string& path);

// The same for text already in memory; `path` names it in messages.
std::vector<RequestSpec> parse_prompts(const std::string& text, const std::string& path);

// The requests as a prompts file (one JSON object a line) that parse_prompts reads back equal;
// `after` is written as the id of the request it names.
std::string format_prompts(const std::vector<RequestSpec>& specs);

// Checks requests against a model: token ids in [0, vocab_size), a non-empty prompt, and
// prompt + max_new_tokens within max_context (prompt + 1 when max_new_tokens is not given).
// Errors are "PATH:LINE: request ID: ...".
void validate_requests(const std::vector<RequestSpec>& specs, int64_t vocab_size,
                       int64_t max_context, const std::string& path);

}  // namespace moetron
