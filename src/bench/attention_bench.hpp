// Attention over the paged KV cache, timed as the engine calls it (Ops::attention after the
// batch is uploaded): decode by batch x context (one query token a sequence), prefill by
// sequences x prompt length (the whole prompt attends causally). Every sequence has blocks of
// its own, so the cache is read from device memory, not from a cache that one sequence warmed.
#pragma once
#include <functional>

#include "moetron/bench/compute_bench.hpp"

namespace moetron::bench_detail {

void decode_attention(Ops& ops, const ComputeBench& b, SeriesTable& table);   // kAttentionDecode
void prefill_attention(Ops& ops, const ComputeBench& b, SeriesTable& table);  // kAttentionPrefill
// Ops::attention_inputs by tokens (one sequence's prompt; QK-norm as the forward applies it).
void attention_inputs(Ops& ops, const ComputeBench& b, SeriesTable& table);  // kAttentionInputs
// The host's cost of one decode attention call (the first shape, 16 sequences of 128 tokens),
// timed by `time` (a timing of a call: the launch-cost bench's).
Measurement attention_launch_cost(Ops& ops, const ComputeBench& b,
                                  const std::function<Measurement(const std::function<void()>&)>& time);

}  // namespace moetron::bench_detail
