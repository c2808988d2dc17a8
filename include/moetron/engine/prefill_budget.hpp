// The adaptive prefill chunk (`--prefill-chunk auto`): each step's prefill token budget is sized
// so that the step takes at most `itl_target_ratio` times a decode-only step of the same decode
// batch, from the engine's own measured step times (no profile).
//
// Model: a step of d decodes and p prefill tokens takes t = D(b(d)) + c·p, where b(d) is d's
// batch bucket (decode_bucket: 0 for d = 0, then 1 | 2 | 3-4 | 5-8 | ..., the sizes decode steps
// are padded to), D its decode-only time and c the marginal time of one prefill token, shared by
// every bucket. StepCostModel fits it by exponentially forgetting least squares over the steps
// seen (one intercept per bucket, the common slope from the variation of p within the buckets,
// once p spreads by a real amount), so steps that mix decodes and prefill inform it too: under
// load there may be no decode-only step at all.
//
// Budget (adaptive_prefill_budget): with no decodes there is no inter-token latency to protect:
// the whole step (max_tokens). Otherwise floor((ratio - 1) · D / c), at least min_chunk (so
// prefill always progresses) and at most max_tokens; before the model has both a positive slope
// and a positive decode time for the batch (start-up), startup_chunk, 2 x and 4 x startup_chunk
// in turn step by step: under load a fixed start-up budget is always filled, every step's prefill
// is the same and no slope can ever be fitted (measured: stuck at 64 tokens a step at 640
// requests/s on an H200, a third of the offered tokens served).
//
// Agreement: every rank of a replica runs its own scheduler and must cut the same chunks, so the
// times the model is fed must be the same on all of them. The engine feeds the step time the
// replica's sampling rank measured, which travels to the others with the sampled tokens
// (Engine::run); a rank's own clock never drives the budget.
//
// Replicas (dp > 1): that time is the lockstep step's, waits for the other replicas included, and
// no time of the replica's own work can be measured instead. The replicas meet in every MoE
// layer's all-to-all, from the first MoE layer on, and there each rank runs its experts on the
// entries every replica sent it: after the first meeting a replica's work depends on the others'
// tokens, so no point of the step ends its own share, and no clock reading before the first
// meeting covers more than the embedding and the first layers. Timing the waits to subtract them
// does not work either: on CUDA the entries' exchange is enqueued on the stream with the kernels
// around it (a decode-only step is one graph replay), so the host clock cannot see where the
// device waits. What follows: the model charges the other replicas' work to this replica's
// (decodes, prefill). Under even load their prefill moves with this one's and the slope absorbs
// it; under uneven load (another replica prefilling while this one decodes) the decode time reads
// high, the budget grows, and a step may exceed the ratio. Likewise a decode-only step is padded
// to the largest replica's batch (DecodeGraphs), and its time is filed under this replica's own
// batch's bucket. Counting the step's prefill over all replicas instead would split one budget
// between them: not done, as it changes the policy, not the measurement.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moetron {

// SchedulerLimits::prefill_chunk's value for `--prefill-chunk auto`.
constexpr int64_t kPrefillChunkAuto = -1;

// `--prefill-chunk` as given: "auto" (kPrefillChunkAuto) or an integer >= 0 (0: whole prompts);
// anything else throws Error naming the option.
int64_t parse_prefill_chunk(const std::string& text);
// The setting as the results file records it (root attribute prefill_chunk): "auto" or decimal.
std::string prefill_chunk_text(int64_t prefill_chunk);

struct AdaptiveChunk {
  double itl_target_ratio = 2.0;  // --itl-target-ratio: a step's time over a decode-only one's, > 1
  int64_t min_chunk = 16;         // the least budget while decodes run, so prefill progresses
  int64_t startup_chunk = 64;     // the budget while the step times are not known yet (x1, x2, x4 in turn)
};

// What StepCostModel estimates for one decode batch.
struct MeasuredStepCost {
  double decode_s = 0;             // a decode-only step of that batch
  double per_prefill_token_s = 0;  // each prefill token the step takes on top
};

// The prefill tokens a step with `decodes` decodes may take (see above); `cost`: the estimate for
// that batch, none at start-up; `probe`: the steps observed so far (picks the start-up budget).
int64_t adaptive_prefill_budget(const AdaptiveChunk& policy, int64_t decodes, const std::optional<MeasuredStepCost>& cost,
                                int64_t max_tokens, int64_t probe = 0);

class StepCostModel {
 public:
  // `forgetting`: the weight, in (0, 1], a bucket's earlier steps keep each time it sees another.
  explicit StepCostModel(double forgetting = 0.95);
  // One step: `decodes` decoding sequences, `prefill_tokens` prefill tokens, `seconds` its time.
  void observe(int64_t decodes, int64_t prefill_tokens, double seconds);
  // The decode time of `decodes`' bucket (else of the nearest smaller bucket seen) and the
  // per-token slope; none while either is unknown or not positive, or for decodes < 1.
  std::optional<MeasuredStepCost> estimate(int64_t decodes) const;
  int64_t observed() const { return observed_; }  // steps observed

 private:
  struct Sums {  // exponentially weighted: weight, Σp, Σt, Σp², Σpt
    double w = 0, p = 0, t = 0, pp = 0, pt = 0;
  };
  void refit();

  double forgetting_;
  std::vector<Sums> buckets_;  // by decode_bucket
  double slope_ = 0;  // the last slope fitted from enough spread in p; 0: none yet
  int64_t observed_ = 0;
};

}  // namespace moetron
