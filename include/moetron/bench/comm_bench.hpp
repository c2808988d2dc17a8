// The collective microbenchmarks over one group of the job's real ranks, through the project's
// Communicator (MPI on the CPU, NCCL or staged MPI on GPUs, as device_setup chooses), so they
// measure what the engine's collectives will cost: all-reduce, all-to-all(v), send/recv
// (ping-pong; half a round trip) and broadcast, by bytes. Every rank of the group calls it; each
// point is the slowest rank's time, agreed over the group.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/bench/profile.hpp"
#include "moetron/bench/timing.hpp"
#include "moetron/comm/communicator.hpp"

namespace moetron {

struct CommBenchGroup {
  Communicator* comm = nullptr;
  bool spans_nodes = false;
  int send_peer = 1;  // the rank that ping-pongs with rank 0 (on another node when spans_nodes)
  // Called on the group's rank 0 after each size with one line of its four medians; may be empty.
  std::function<void(const std::string&)> progress;
};

// Adds kAllreduce, kAlltoall, kSendRecv and kBroadcast series keyed (group size, spans_nodes).
// A group of one rank measures nothing.
void run_comm_benchmarks(Ops& ops, const CommBenchGroup& group, const std::vector<int64_t>& bytes,
                         const TimingSettings& timing, HardwareProfile& profile);

}  // namespace moetron
