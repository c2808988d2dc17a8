#include "moetron/bench/comm_bench.hpp"

#include <chrono>
#include <cmath>
#include <sstream>

#include "bench_tensors.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"

namespace moetron {

namespace {

using bench_detail::leading;

// The group's slowest rank, per batch (nanoseconds over the host values' all-reduce).
void slowest_rank(Communicator& comm, std::vector<double>& seconds) {
  std::vector<int64_t> ns;
  for (double s : seconds) ns.push_back(static_cast<int64_t>(std::llround(s * 1e9)));
  comm.allreduce_host(ns, true);
  for (size_t i = 0; i < ns.size(); ++i) seconds[i] = static_cast<double>(ns[i]) * 1e-9;
}

Measurement time_collective(Ops& ops, Communicator& comm, const std::function<void()>& call, const TimingSettings& s) {
  TimedWork work;
  work.call = call;
  work.wait = [&] { ops.sync(); };
  work.align = [&] { comm.barrier(); };
  work.agree = [&](std::vector<double>& seconds) { slowest_rank(comm, seconds); };
  return measure(work, s);
}

}  // namespace

void run_comm_benchmarks(Ops& ops, const CommBenchGroup& g, const std::vector<int64_t>& bytes,
                         const TimingSettings& timing, HardwareProfile& profile) {
  Communicator& comm = *g.comm;
  const int n = comm.size(), me = comm.rank();
  if (n < 2 || bytes.empty()) return;
  MOETRON_CHECK(g.send_peer > 0 && g.send_peer < n, "run_comm_benchmarks: send peer " << g.send_peer << " of " << n);
  const DType act = ops.activation_dtype();
  const int64_t es = static_cast<int64_t>(dtype_size(act)), max_elements = bytes.back() / es;
  // Zeros: what a collective moves does not change its speed, and sums of zeros stay finite.
  Tensor buffer = ops.alloc(act, {max_elements}), received = ops.alloc(act, {max_elements});
  ops.fill_zero(buffer);
  ops.fill_zero(received);
  const std::vector<int64_t> key{n, g.spans_nodes ? 1 : 0};
  for (int64_t b : bytes) {
    const auto start = std::chrono::steady_clock::now();
    const int64_t elements = std::max<int64_t>(1, b / es);
    Tensor part = leading(buffer, elements);
    const Measurement allreduce = time_collective(ops, comm, [&] { comm.allreduce_sum(part); }, timing);
    profile.table(tables::kAllreduce).add(key, elements * es, allreduce);
    const Measurement broadcast = time_collective(ops, comm, [&] { comm.broadcast(part, 0); }, timing);
    profile.table(tables::kBroadcast).add(key, elements * es, broadcast);
    // All-to-all(v): the same rows to every peer, `elements` (rounded to whole peers) from each rank.
    const int64_t rows = std::max<int64_t>(n, elements / n * n);
    const Tensor send = leading(buffer, rows, 1);
    Tensor recv = leading(received, rows, 1);
    const std::vector<int64_t> per_peer(static_cast<size_t>(n), rows / n);
    const Measurement alltoall =
        time_collective(ops, comm, [&] { comm.alltoallv(send, per_peer, recv, per_peer); }, timing);
    profile.table(tables::kAlltoall).add(key, rows * es, alltoall);
    // Ping-pong between rank 0 and the peer; a call is a round trip, so half of it is one message.
    Measurement round_trip = time_collective(
        ops, comm,
        [&] {
          if (me == 0) comm.send(part, g.send_peer, 7), comm.recv(part, g.send_peer, 8);
          if (me == g.send_peer) comm.recv(part, 0, 7), comm.send(part, 0, 8);
        },
        timing);
    for (double* t : {&round_trip.median_s, &round_trip.p10_s, &round_trip.p90_s}) *t /= 2;
    profile.table(tables::kSendRecv).add({2, key[1]}, elements * es, round_trip);
    if (me == 0 && g.progress) {
      std::ostringstream line;
      line.precision(3);
      line << "collectives over " << n << " ranks at " << human_bytes(static_cast<double>(elements * es))
           << ": all-reduce " << allreduce.median_s * 1e3 << " ms, broadcast " << broadcast.median_s * 1e3
           << " ms, all-to-all " << alltoall.median_s * 1e3 << " ms, send " << round_trip.median_s * 1e3
           << " ms; measured in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
           << " s";
      g.progress(line.str());
    }
  }
}

}  // namespace moetron
