#include "moetron/engine/warm_up.hpp"

#include <algorithm>
#include <vector>

#include "moetron/comm/communicator.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/random_fill.hpp"
#include "moetron/engine/scheduler.hpp"

namespace moetron {
namespace {

// A sequence of `tokens` prompt tokens spread over the vocabulary, every block the scratch block.
Sequence scratch_sequence(int64_t tokens, const WarmUpShape& s) {
  Sequence seq;
  seq.prompt.resize(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i)
    seq.prompt[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % s.vocab_size);
  seq.blocks.assign(static_cast<size_t>((tokens + s.block_size - 1) / s.block_size), s.scratch_block);
  return seq;
}

// A later pipeline stage has no embedding: it starts from rows of the dummy-weight generator
// (core/random_fill.hpp), so that its routers spread the tokens over the experts as a prompt would
// (rows of zeros would all pick the same experts and take other kernels).
Tensor made_up_stream(Ops& ops, int64_t rows, int64_t hidden) {
  const RandomFill fill{/*key=*/0x5741524D55505F31ull, static_cast<float>(0.5 / kCenteredStd), 0.0f};
  Tensor host = host_tensor(ops.activation_dtype(), {rows, hidden});
  fill_random_rows(fill, host.dtype, 0, hidden, rows, hidden, host.data);
  Tensor stream = ops.temp(host.dtype, {rows, hidden});
  ops.copy_from_host(stream, host.data);
  return stream;
}

void run_step(ModelForward& forward, Ops& ops, const std::vector<ScheduledSeq>& group, const WarmUpShape& s) {
  ops.reset_temps();
  const BatchLayout layout = build_batch_layout(group, s.block_size);
  const BatchTensors batch = ops.upload_batch(layout);
  Tensor hidden = s.first_stage ? forward.embed(batch) : made_up_stream(ops, layout.num_tokens, s.hidden_size);
  forward.run_layers(hidden, batch);
  if (s.last_stage) forward.logits_device(hidden, batch);
  ops.sync();
  ops.reset_temps();
}

}  // namespace

void warm_up_forward(ModelForward& forward, Ops& ops, const WarmUpShape& s) {
  MOETRON_ASSERT(s.block_size > 0 && s.vocab_size > 0 && s.hidden_size > 0);
  const std::vector<Communicator*> groups = forward.groups();
  std::vector<Traffic> before;
  for (Communicator* c : groups) before.push_back(c->traffic());

  if (s.prefill_tokens > 0) {
    Sequence prompt = scratch_sequence(s.prefill_tokens, s);
    run_step(forward, ops, {{&prompt, 0, s.prefill_tokens, /*prefill=*/true}}, s);
  }
  if (s.decode_rows > 0) {
    // Each decodes its second token: one query row against two cached positions.
    std::vector<Sequence> decoders(static_cast<size_t>(s.decode_rows), scratch_sequence(2, s));
    std::vector<ScheduledSeq> group;
    for (Sequence& d : decoders) group.push_back({&d, 1, 1, /*prefill=*/false});
    run_step(forward, ops, group, s);
  }

  for (size_t g = 0; g < groups.size(); ++g) {
    const Traffic after = groups[g]->traffic();
    groups[g]->forget_traffic({after.sent - before[g].sent, after.received - before[g].received});
  }
  forward.forget_expert_work();
}

}  // namespace moetron
