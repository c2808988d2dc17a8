// Synthetic serving workloads for `moetron workload`: how long prompts and outputs are, and
// when requests arrive. Reproducible: the same spec gives the same requests on every platform
// (its own generator, splitmix64, not the standard library's distributions, whose algorithms
// differ between implementations).
//
// Lengths, each drawn uniformly from a closed integer range:
//   short   prompt 8-64 tokens,      output 8-32 tokens      (chat turns)
//   medium  prompt 128-512 tokens,   output 32-128 tokens    (questions with context)
//   long    prompt 1024-2048 tokens, output 128-256 tokens   (summaries, retrieval)
//   mixed   each request short, medium or long with probabilities 0.5, 0.3, 0.2
// Prompt tokens are uniform over the vocabulary [0, vocab).
//
// Arrivals, at most one of:
//   rate R > 0         a Poisson process: exponential gaps of mean 1/R s; the first request
//                      arrives one gap after the start (arrival_s).
//   concurrency C > 0  a closed loop of C clients: requests 0..C-1 arrive at the start, and
//                      request i >= C arrives when request i - C finishes (the prompts file's
//                      "after" field), so C requests are in flight until the last ones.
//   neither            every request arrives at the start (no arrival_s).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moetron {

enum class WorkloadKind { Short, Medium, Long, Mixed };
// "short", "medium", "long", "mixed"; anything else is an Error naming `option`.
WorkloadKind parse_workload_kind(const std::string& text, const std::string& option);

struct LengthRange {
  int64_t min = 0, max = 0;  // inclusive
};
struct KindLengths {
  LengthRange prompt, output;
};
// The ranges of short, medium or long (mixed draws one of them per request).
KindLengths kind_lengths(WorkloadKind kind);

struct WorkloadSpec {
  WorkloadKind kind = WorkloadKind::Short;
  int64_t requests = 0;     // --requests
  double rate = 0;          // --rate, requests per second; 0: not given
  int64_t concurrency = 0;  // --concurrency; 0: not given
  int64_t vocab = 0;        // --vocab
  uint64_t seed = 0;        // --seed
};
// Throws Error naming the option (--requests, --rate, ...) of the first value out of range.
void check_workload_spec(const WorkloadSpec& spec);

struct GeneratedRequest {
  std::string id;  // "r<index>"
  std::vector<int32_t> prompt_tokens;
  int64_t max_new_tokens = 0;
  std::optional<double> arrival_s;  // Poisson arrivals
  int64_t after = -1;               // closed loop: the index of the request it follows
};
std::vector<GeneratedRequest> generate_workload(const WorkloadSpec& spec);

}  // namespace moetron
