// Attention over the paged KV cache, timed as the engine calls it (Ops::attention after the
// batch is uploaded): decode by batch x context (one query token a sequence), prefill by
// sequences x prompt length (the whole prompt attends causally). Every sequence has blocks of
// its own, so the cache is read from device memory, not from a cache that one sequence warmed.
#pragma once
#include "moetron/bench/compute_bench.hpp"

namespace moetron::bench_detail {

void decode_attention(Ops& ops, const ComputeBench& b, SeriesTable& table);   // kAttentionDecode
void prefill_attention(Ops& ops, const ComputeBench& b, SeriesTable& table);  // kAttentionPrefill
// Ops::attention_inputs by tokens (one sequence's prompt; QK-norm as the forward applies it).
void attention_inputs(Ops& ops, const ComputeBench& b, SeriesTable& table);  // kAttentionInputs

}  // namespace moetron::bench_detail
