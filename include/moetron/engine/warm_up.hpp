// One eager forward of the largest prefill step and of the largest decode batch before the first
// request. On a GPU the first forward of a process is slow: CUDA loads each kernel's module at its
// first launch and cuBLAS its kernels at their first use (one H200, 512-token prompts: a first
// prefill step of 150-171 ms where the next took 1.7-5.1 ms, twenty-ninth session). Warmed up
// here, that cost is
// startup time (/startup@warmup_seconds), not the first requests' time to first token.
#pragma once
#include <cstdint>

#include "moetron/backend/ops.hpp"
#include "moetron/model/forward.hpp"

namespace moetron {

struct WarmUpShape {
  int64_t prefill_tokens = 0;  // one sequence's prefill of this many tokens (the largest step)
  int64_t decode_rows = 0;     // then this many sequences decoding one token each (the largest batch)
  int64_t block_size = 16;
  int32_t scratch_block = 0;   // the KV block no sequence holds: the only one the warm-up writes
  bool first_stage = true;     // embeds the tokens; a later stage starts from a made-up residual stream
  bool last_stage = true;      // computes the logits
  int64_t vocab_size = 1, hidden_size = 1;
};

// Runs the two steps through this rank's layers (every rank of the job must call it: the layers'
// collectives), then takes back what they left in the statistics: their traffic, the experts'
// served tokens and time (ModelForward::forget_expert_work). The routing counts are untouched
// (only count_routing adds to them) and no sequence's KV cache is written.
void warm_up_forward(ModelForward& forward, Ops& ops, const WarmUpShape& shape);

}  // namespace moetron
