// Token sampling from one row of logits, reproducible from (seed, step) alone.
//
// Order of operations (Hugging Face's logits-warper order):
//   1. temperature == 0: greedy, argmax (the lowest index among equal maxima). Done.
//   2. Candidates are ordered by logit, descending; equal logits keep the lower token id first.
//      top_k > 0 keeps the first top_k candidates (exactly k, even across ties).
//   3. Candidate weights w_i = expf((logit_i - logit_max) / temperature) in float32, i.e. the
//      softmax of logits / temperature, unnormalised; subtracting the maximum first keeps tiny
//      temperatures finite. W = the sum of the kept candidates' weights, in double (in any
//      order); cumulative sums c_i = w_0 + ... + w_i in double, in candidate order.
//   4. The nucleus: with top_p < 1, candidates 0..n for the first n with c_n >= top_p * W, and
//      M = c_n (at least one token always remains); with top_p == 1, all kept candidates and
//      M = W.
//   5. Draw u = uniform_from_counter(seed, step) and return the first candidate i of the
//      nucleus with c_i > u * M (in double; the nucleus' last one if rounding leaves none).
// Another implementation (the CUDA sampler, sampling/radix_sampling.hpp) draws the same u bit for
// bit (sampling/philox.hpp). Its expf may differ from the host's by an ulp or two and it sums in
// another order, so it can pick a different token only when u * M or top_p * W lies within
// ~1e-6 relative of a boundary c_i (tests/gpu/test_sampling.cpp holds it to that).
//
// The random number: Philox4x32-10 (Salmon et al., SC'11) with
//   key     = { low 32 bits of seed, high 32 bits of seed }
//   counter = { low 32 bits of counter, high 32 bits of counter, 0, 0 }
//   u       = (output word 0 >> 8) * 2^-24, a float in [0, 1) with 24 random bits.
// The CUDA sampler draws the same u; `step` is the caller's counter (e.g. the number of tokens
// the request has generated so far), so a token never depends on batching.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "moetron/sampling/non_finite_logits.hpp"

namespace moetron {

// One request's sampling settings.
struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  uint64_t seed = 0;
};

// One Philox4x32 block with 10 rounds: the raw generator, exposed for known-answer tests.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// The uniform float in [0, 1) that sampling draws for (seed, counter); see above.
float uniform_from_counter(uint64_t seed, uint64_t counter);

// Throws Error naming `where` (e.g. "request 3" or "--temperature") when a setting is out of
// range: temperature >= 0, top_k >= 0, 0 < top_p <= 1.
void check_sampling_params(const SamplingParams& p, const std::string& where);

// Picks the next token from logits[0, vocab) as described above, or kNonFiniteToken when the
// row holds a NaN or +Inf (non_finite_logits.hpp). p must be valid.
int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t step);

// Greedy: the argmax of logits[0, vocab) (the lowest index among equal maxima), or
// kNonFiniteToken when the row holds a NaN or +Inf.
int32_t argmax_token(const float* logits, int64_t vocab);

}  // namespace moetron
