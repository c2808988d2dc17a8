#include "moetron/engine/decode_graphs.hpp"

#include <algorithm>

#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#include "moetron/engine/decode_batches.hpp"

namespace moetron {

DecodeGraphs::DecodeGraphs(Ops& ops, ModelForward& forward, int64_t max_batch,
                           int64_t max_blocks_per_seq, int64_t block_size, int32_t scratch_block,
                           bool replicas_meet)
    : ops_(ops),
      forward_(forward),
      max_blocks_per_seq_(max_blocks_per_seq),
      block_size_(block_size),
      scratch_block_(scratch_block),
      replicas_meet_(replicas_meet),
      buckets_(padded_decode_batches(max_batch)) {}

void DecodeGraphs::write_inputs(Bucket& b, const std::vector<ScheduledSeq>& group) {
  const int64_t B = b.size, n = static_cast<int64_t>(group.size());
  MOETRON_ASSERT(n <= B);
  // Written in place in the upload's layout (the bucket's host image: the gaps between arrays stay
  // zero). Padding rows: token 0 at position 0, one KV entry in the scratch block, their own
  // logit row, and no expert (valid: the real rows).
  const BatchArrays arrays = arrays_of(B);
  std::vector<int32_t>& packed = b.host_arrays;
  packed.resize(static_cast<size_t>(arrays.total()), 0);
  const auto [ids, pos, slots, qs, lens, tables, rows, valid] = arrays.views(packed);
  *valid = static_cast<int32_t>(n);
  std::fill_n(ids, B, 0);
  std::fill_n(pos, B, 0);
  std::fill_n(slots, B, scratch_block_ * static_cast<int32_t>(block_size_));
  std::fill_n(lens, B, 1);
  std::fill_n(tables, B * max_blocks_per_seq_, scratch_block_);
  for (int64_t i = 0; i <= B; ++i) qs[i] = static_cast<int32_t>(i);
  for (int64_t i = 0; i < B; ++i) rows[i] = static_cast<int32_t>(i);
  const BatchLayout real = build_batch_layout(group, block_size_);
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = real.token_ids[i];
    pos[i] = real.positions[i];
    slots[i] = real.slot_mapping[i];
    lens[i] = real.kv_lens[i];
    std::copy_n(&real.block_tables[static_cast<size_t>(i * real.max_blocks_per_seq)],
                real.max_blocks_per_seq, tables + i * max_blocks_per_seq_);
  }
  ops_.copy_from_host(b.input_arrays, packed.data());
}

BatchArrays DecodeGraphs::arrays_of(int64_t bucket_size) const {
  return BatchArrays(bucket_size, bucket_size, max_blocks_per_seq_, bucket_size);
}

void DecodeGraphs::capture() {
  MOETRON_ASSERT(ops_.can_record());
  for (int64_t size : buckets_) {
    Bucket b;
    b.size = size;
    BatchTensors& in = b.inputs;
    in.num_tokens = in.num_seqs = size;
    in.max_blocks_per_seq = max_blocks_per_seq_;
    in.block_size = block_size_;
    in.max_kv_len = max_blocks_per_seq_ * block_size_;
    in.dispatch_tokens = replicas_meet_ ? size : 0;  // the dispatch buffers fit the bucket
    b.input_arrays = ops_.alloc(DType::I32, {arrays_of(size).total()});
    arrays_of(size).bind(b.input_arrays, in);
    write_inputs(b, {});  // all padding: valid inputs, writing only the scratch block
    // One eager run first: lazy module loading and library workspaces must not happen while
    // recording.
    ops_.reset_temps();
    Tensor warm = forward_.embed(in);
    forward_.run_layers(warm, in);
    forward_.logits_device(warm, in);
    ops_.sync();
    ops_.reset_temps();
    // Traffic: the calls made while recording move nothing now; each replay moves them.
    const std::vector<Communicator*> groups = forward_.groups();
    std::vector<Traffic> before;
    for (Communicator* c : groups) before.push_back(c->traffic());
    ops_.begin_recording();
    Tensor hidden = forward_.embed(in);
    forward_.run_layers(hidden, in);
    b.logits = forward_.logits_device(hidden, in);
    b.recording = ops_.end_recording();
    for (size_t g = 0; g < groups.size(); ++g) {
      const Traffic after = groups[g]->traffic();
      b.traffic.push_back({after.sent - before[g].sent, after.received - before[g].received});
      groups[g]->adjust_traffic({-b.traffic[g].sent, -b.traffic[g].received});
    }
    b.temps_end = ops_.temp_mark();
    LOG_DEBUG("decode graph for batch " << size << ": " << ops_.recording_nodes(b.recording) << " nodes");
    recorded_.push_back(std::move(b));
  }
  LOG_INFO("recorded the decode step for batch sizes 1.." << buckets_.back() << " (" << buckets_.size()
                                                          << " graphs, " << ops_.recording_nodes(recorded_.back().recording)
                                                          << " nodes in the largest)");
}

bool DecodeGraphs::fits(const std::vector<ScheduledSeq>& group, int64_t dispatch_tokens) const {
  const auto decodes = [this](const ScheduledSeq& s) {
    return !s.prefill && s.count == 1 && s.start > 0 &&
           static_cast<int64_t>(s.seq->blocks.size()) <= max_blocks_per_seq_;
  };
  if (recorded_.empty()) return false;
  if (replicas_meet_) {
    // dispatch_tokens > 0 only in decode-only steps; the agreed bounds hold every sequence.
    if (dispatch_tokens == 0 || dispatch_tokens > buckets_.back()) return false;
    MOETRON_CHECK(std::all_of(group.begin(), group.end(), decodes),
                  "decode graphs: a sequence of a decode-only step does not fit the recording");
    return true;
  }
  if (group.empty() || static_cast<int64_t>(group.size()) > buckets_.back()) return false;
  return std::all_of(group.begin(), group.end(), decodes);
}

Tensor DecodeGraphs::run(const std::vector<ScheduledSeq>& group, int64_t dispatch_tokens) {
  const int64_t n = std::max(static_cast<int64_t>(group.size()), dispatch_tokens);
  const size_t bucket = decode_bucket(n);  // StepCostModel groups step times by the same
  MOETRON_ASSERT(bucket >= 1 && bucket <= recorded_.size());
  Bucket& b = recorded_[bucket - 1];
  write_inputs(b, group);
  ops_.replay(b.recording);
  const std::vector<Communicator*> groups = forward_.groups();
  for (size_t g = 0; g < groups.size(); ++g) groups[g]->adjust_traffic(b.traffic[g]);
  ops_.temp_resume(b.temps_end);  // what the step does next must not overwrite the logits
  return b.logits;
}

}  // namespace moetron
