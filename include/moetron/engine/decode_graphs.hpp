// Decode steps recorded once per batch-size bucket and replayed (CUDA graphs where the backend
// records): the whole step — embedding, every layer, final norm, LM head — runs as one launch,
// so the GPU does not idle between kernels. A batch runs in the smallest bucket that holds it;
// the spare rows are padding that writes only to a scratch KV-cache block and is never read.
#pragma once
#include <cstdint>
#include <vector>

#include "moetron/engine/scheduler.hpp"
#include "moetron/model/forward.hpp"

namespace moetron {

class DecodeGraphs {
 public:
  // `max_blocks_per_seq` bounds any sequence's block table; `scratch_block` is a KV-cache
  // block the scheduler never hands out.
  DecodeGraphs(Ops& ops, ModelForward& forward, int64_t max_batch, int64_t max_blocks_per_seq,
               int64_t block_size, int32_t scratch_block);

  // Records every bucket (1, 2, 4, ... up to max_batch). Call once the KV cache exists.
  void capture();
  // True when every sequence decodes one token and the batch fits a bucket.
  bool fits(const std::vector<ScheduledSeq>& group) const;
  // Replays the group's bucket; returns its logits (see ModelForward::logits_device), whose
  // first group.size() rows are the group's.
  Tensor run(const std::vector<ScheduledSeq>& group);
  const std::vector<int64_t>& buckets() const { return buckets_; }

 private:
  struct Bucket {
    int64_t size = 0;
    BatchTensors inputs;  // persistent: written before each replay
    Tensor logits;        // where the recording leaves them
    int recording = -1;
  };
  void write_inputs(Bucket& b, const std::vector<ScheduledSeq>& group);

  Ops& ops_;
  ModelForward& forward_;
  int64_t max_blocks_per_seq_, block_size_;
  int32_t scratch_block_;
  std::vector<int64_t> buckets_;
  std::vector<Bucket> recorded_;
};

}  // namespace moetron
