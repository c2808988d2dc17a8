#include "moetron/analysis/workload_generator.hpp"

#include <cmath>

#include "moetron/core/error.hpp"

namespace moetron {
namespace {

// splitmix64 (Steele, Lea, Flood 2014): a fixed algorithm, so files are identical everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  int64_t in(LengthRange r) {
    return r.min + static_cast<int64_t>(uniform() * static_cast<double>(r.max - r.min + 1));
  }
  double exponential(double rate) { return -std::log1p(-uniform()) / rate; }

 private:
  uint64_t state_;
};

WorkloadKind mixed_pick(Rng& rng) {
  const double u = rng.uniform();
  return u < 0.5 ? WorkloadKind::Short : u < 0.8 ? WorkloadKind::Medium : WorkloadKind::Long;
}

}  // namespace

WorkloadKind parse_workload_kind(const std::string& text, const std::string& option) {
  if (text == "short") return WorkloadKind::Short;
  if (text == "medium") return WorkloadKind::Medium;
  if (text == "long") return WorkloadKind::Long;
  if (text == "mixed") return WorkloadKind::Mixed;
  MOETRON_FAIL(option << ": unknown kind '" << text << "' (expected short, medium, long or mixed)");
}

KindLengths kind_lengths(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::Short: return {{8, 64}, {8, 32}};
    case WorkloadKind::Medium: return {{128, 512}, {32, 128}};
    case WorkloadKind::Long: return {{1024, 2048}, {128, 256}};
    case WorkloadKind::Mixed: break;
  }
  MOETRON_FAIL("kind_lengths: mixed has no single range (each request draws short, medium or long)");
}

void check_workload_spec(const WorkloadSpec& s) {
  MOETRON_CHECK(s.requests >= 1, "--requests must be at least 1, got " << s.requests);
  MOETRON_CHECK(std::isfinite(s.rate) && s.rate >= 0, "--rate must be a number of requests per second > 0, got "
                                                          << s.rate);
  MOETRON_CHECK(s.concurrency >= 0, "--concurrency must be at least 1, got " << s.concurrency);
  MOETRON_CHECK(s.rate == 0 || s.concurrency == 0,
                "--rate and --concurrency exclude each other (an open or a closed loop; give one)");
  MOETRON_CHECK(s.vocab >= 1 && s.vocab <= (int64_t{1} << 31),
                "--vocab must be the model's vocabulary size (>= 1), got " << s.vocab);
}

std::vector<GeneratedRequest> generate_workload(const WorkloadSpec& spec) {
  check_workload_spec(spec);
  Rng rng(spec.seed);
  std::vector<GeneratedRequest> out;
  double clock = 0;
  for (int64_t i = 0; i < spec.requests; ++i) {
    GeneratedRequest r;
    r.id = "r" + std::to_string(i);
    const KindLengths len = kind_lengths(spec.kind == WorkloadKind::Mixed ? mixed_pick(rng) : spec.kind);
    const int64_t prompt = rng.in(len.prompt);
    for (int64_t t = 0; t < prompt; ++t)
      r.prompt_tokens.push_back(static_cast<int32_t>(rng.in({0, spec.vocab - 1})));
    r.max_new_tokens = rng.in(len.output);
    if (spec.rate > 0) r.arrival_s = clock += rng.exponential(spec.rate);
    if (spec.concurrency > 0 && i >= spec.concurrency) r.after = i - spec.concurrency;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace moetron
