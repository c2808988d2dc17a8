// EmulatedCommunicator: one rank of a group that is not there (`moetron run --emulate-rank`).
// Every collective becomes a local operation that touches the bytes the real one would move on
// this rank, and counts the traffic the real one would cause, so that one process runs rank R's
// share of an N-rank plan with the kernels and buffer sizes of the real rank. The values it
// produces are stand-ins: an emulated rank's tokens mean nothing, its times are what count.
//
// What each call does, as if every rank of the group held what this rank holds (the ranks of
// a plan are symmetric under a symmetric workload):
//   allreduce_sum      copies the buffer into scratch (the tensor keeps this rank's part)
//   allgather          copies `in` into every rank's slot of `out`
//   alltoallv          fills each peer's block of `recv` from the block this rank sends itself
//                      (repeated or cut to the block's rows; zeros if it sends itself nothing):
//                      the tokens peers would route to this rank's experts
//   send               copies the tensor into scratch; recv fills it from a stand-in of
//                      deterministic unit-variance values (a residual stream for the router)
//   broadcast          the root copies into scratch, others fill from the stand-in
//   allreduce_host     max: unchanged; sum: times the group size
//   alltoall_host      every peer sends what this rank sends itself
//   broadcast_host     unchanged (the root's values are this rank's)
// Host tensors move by memcpy (as MPI moves them); device tensors with the backend's copies,
// which a CUDA graph can record.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "moetron/backend/ops.hpp"
#include "moetron/comm/communicator.hpp"

namespace moetron {

// Scratch and stand-in memory shared by the emulated groups of one rank. The device scratch is
// made up front for `reserve_bytes` (the collectives of a recorded decode step write there, and
// nothing may be allocated while a CUDA graph records); it and the stand-ins grow, outside
// recordings, when a larger tensor comes.
class EmulationBuffers {
 public:
  EmulationBuffers(Ops& ops, size_t reserve_bytes);
  // A tensor shaped like `like`, on its device, over scratch memory (written, never read).
  Tensor sink(const Tensor& like);
  // A tensor shaped like `like`, on its device, holding the stand-in values of its dtype.
  Tensor stand_in(const Tensor& like);
  // dst = src (same bytes): memcpy for host tensors, the backend's copy for device tensors.
  void copy(const Tensor& src, Tensor& dst);
  void fill_zero(Tensor& t);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

std::unique_ptr<Communicator> make_emulated_communicator(int rank, int size,
                                                         std::shared_ptr<EmulationBuffers> buffers);

}  // namespace moetron
