// Decode steps recorded once per batch-size bucket and replayed (CUDA graphs where the backend
// records): the whole step — embedding, every layer, final norm, LM head — runs as one launch,
// so the GPU does not idle between kernels. A batch runs in the smallest bucket that holds it
// (engine/decode_batches.hpp); the spare rows are padding that writes only to a scratch KV-cache
// block and is never read.
#pragma once
#include <cstdint>
#include <vector>

#include "moetron/engine/scheduler.hpp"
#include "moetron/model/forward.hpp"

namespace moetron {

class DecodeGraphs {
 public:
  // `max_blocks_per_seq` bounds any sequence's block table; `scratch_block` is a KV-cache
  // block the scheduler never hands out. With `replicas_meet` (several replicas, which meet in
  // the experts' all-to-all) every replica records the same buckets and replays the same one
  // in each decode step, so max_batch and max_blocks_per_seq must be agreed by all of them.
  DecodeGraphs(Ops& ops, ModelForward& forward, int64_t max_batch, int64_t max_blocks_per_seq,
               int64_t block_size, int32_t scratch_block, bool replicas_meet = false);

  // Records every bucket (1, 2, 4, ... up to max_batch). Call once the KV cache exists (with
  // replicas_meet: on every replica at once, as recording runs the forward once eagerly).
  void capture();
  // True when every sequence decodes one token and the batch fits a bucket. With
  // replicas_meet the answer depends only on the agreed dispatch_tokens (see BatchLayout), so
  // that every replica takes the same path; an idle replica's empty group replays too.
  bool fits(const std::vector<ScheduledSeq>& group, int64_t dispatch_tokens = 0) const;
  // Replays the bucket for the group (with replicas_meet: for dispatch_tokens); returns its
  // logits (see ModelForward::logits_device), whose first group.size() rows are the group's.
  Tensor run(const std::vector<ScheduledSeq>& group, int64_t dispatch_tokens = 0);
  const std::vector<int64_t>& buckets() const { return buckets_; }

 private:
  struct Bucket {
    int64_t size = 0;
    BatchTensors inputs;  // persistent: written before each replay
    Tensor input_arrays;  // the one buffer inputs' index arrays view (BatchArrays)
    std::vector<int32_t> host_arrays;  // its host image, kept: written in place each step
    Tensor logits;        // where the recording leaves them
    int recording = -1;
    size_t temps_end = 0;  // where the recording's temporaries end (its logits lie below)
    std::vector<Traffic> traffic;  // what one replay moves, per group of ModelForward::groups()
  };
  // The forward's groups that a recorded step moves data over.
  void write_inputs(Bucket& b, const std::vector<ScheduledSeq>& group);
  BatchArrays arrays_of(int64_t bucket_size) const;  // the layout of a bucket's input_arrays

  Ops& ops_;
  ModelForward& forward_;
  int64_t max_blocks_per_seq_, block_size_;
  int32_t scratch_block_;
  bool replicas_meet_;
  std::vector<int64_t> buckets_;
  std::vector<Bucket> recorded_;
};

}  // namespace moetron
