#include "moetron/predict/workload.hpp"

#include <cmath>
#include <sstream>

#include "moetron/core/error.hpp"

namespace moetron {

void check_workload(const Workload& w) {
  MOETRON_CHECK(w.prompt_tokens >= 1, "--prompt-tokens must be at least 1, got " << w.prompt_tokens);
  MOETRON_CHECK(w.output_tokens >= 1, "--output-tokens must be at least 1, got " << w.output_tokens);
  MOETRON_CHECK(w.requests >= 1, "--requests must be at least 1, got " << w.requests);
  MOETRON_CHECK(std::isfinite(w.arrival_rate) && w.arrival_rate >= 0,
                "--arrival-rate must be >= 0 requests/s (0: all at once), got " << w.arrival_rate);
  MOETRON_CHECK(w.max_batch >= 1, "--max-batch must be at least 1, got " << w.max_batch);
  MOETRON_CHECK(w.max_batch_tokens >= 1, "--max-batch-tokens must be at least 1, got " << w.max_batch_tokens);
  MOETRON_CHECK(w.block_size >= 1, "--block-size must be at least 1, got " << w.block_size);
}

Workload workload_from_requests(const std::vector<RequestSpec>& requests, const Workload& base,
                                const std::string& path) {
  MOETRON_CHECK(!requests.empty(), path << ": no requests");
  double prompt = 0, output = 0;
  for (const RequestSpec& r : requests) {
    prompt += static_cast<double>(r.prompt_tokens.size());
    output += static_cast<double>(r.max_new_tokens > 0 ? r.max_new_tokens : base.output_tokens);
  }
  const double n = static_cast<double>(requests.size());
  Workload w = base;
  w.requests = static_cast<int64_t>(requests.size());
  w.prompt_tokens = std::max<int64_t>(1, std::llround(prompt / n));
  w.output_tokens = std::max<int64_t>(1, std::llround(output / n));
  return w;
}

std::string describe(const Workload& w) {
  std::ostringstream os;
  os << w.requests << " requests of " << w.prompt_tokens << " prompt + " << w.output_tokens << " output tokens, ";
  if (w.arrival_rate > 0)
    os << "arriving at " << w.arrival_rate << "/s";
  else
    os << "all at once";
  os << "; at most " << w.max_batch << " sequences and " << w.max_batch_tokens << " tokens a step";
  return os.str();
}

}  // namespace moetron
