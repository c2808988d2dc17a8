// The work a plan is predicted for: how many requests, how long, how fast they come, and the
// engine's batching limits.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/io/prompts.hpp"

namespace moetron {

struct Workload {
  int64_t prompt_tokens = 512;     // per request (a prompts file gives the mean)
  int64_t output_tokens = 128;     // generated per request
  int64_t requests = 1024;
  double arrival_rate = 0;         // requests per second over the whole cluster; 0: all at once
  int64_t max_batch = 256;         // the engine's --max-batch: sequences in one step
  int64_t max_batch_tokens = 8192; // the engine's --max-batch-tokens: tokens in one step
  int64_t block_size = 16;         // KV-cache block
};

// Throws Error naming the option (--prompt-tokens, ...) of the first value out of range.
void check_workload(const Workload& w);

// The requests of a prompts file as a workload: their count and mean prompt length, and the mean
// of their max_new_tokens (`base.output_tokens` for those that give none); the rest from `base`.
Workload workload_from_requests(const std::vector<RequestSpec>& requests, const Workload& base,
                                const std::string& path);

std::string describe(const Workload& w);  // one line

}  // namespace moetron
