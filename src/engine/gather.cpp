#include "moetron/engine/gather.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/core/error.hpp"
#include "moetron/engine/device_binding.hpp"

namespace moetron {
namespace {

enum Tag : int { kTagCount = 100, kTagHeader, kTagTokens, kTagTimes, kTagLogits };
// index, output tokens, finished by eos, logits floats, preemptions, arrival_s, admitted_s
constexpr size_t kHeaderFields = 7;

// A double in an int64 header field: the same 8 bytes, unchanged.
int64_t bits_of(double d) {
  int64_t i;
  std::memcpy(&i, &d, sizeof i);
  return i;
}
double double_of(int64_t i) {
  double d;
  std::memcpy(&d, &i, sizeof d);
  return d;
}

// A host tensor over a vector's memory. Doubles travel as I64 (the same 8 bytes, unchanged).
template <class T>
Tensor view_of(std::vector<T>& v, DType dtype) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "4- or 8-byte elements");
  Tensor t;
  t.data = v.data();
  t.dtype = dtype;
  t.shape = {static_cast<int64_t>(v.size())};
  return t;
}

struct Packed {
  std::vector<int64_t> header;
  std::vector<int32_t> tokens;
  std::vector<double> times;
  std::vector<float> logits;
};

Packed pack(const std::vector<Sequence>& seqs) {
  Packed p;
  for (const Sequence& s : seqs) {
    p.header.insert(p.header.end(), {s.index, static_cast<int64_t>(s.output.size()),
                                     static_cast<int64_t>(s.finish_reason),
                                     static_cast<int64_t>(s.logits.size()), s.preemptions,
                                     bits_of(s.arrival_s), bits_of(s.admitted_s)});
    p.tokens.insert(p.tokens.end(), s.output.begin(), s.output.end());
    p.times.insert(p.times.end(), s.token_times_s.begin(), s.token_times_s.end());
    p.logits.insert(p.logits.end(), s.logits.begin(), s.logits.end());
  }
  return p;
}

// Fills in the outputs of sequences whose inputs (prompt, limits) rank 0 already knows.
void unpack(const Packed& p, std::vector<Sequence>& out) {
  size_t tok = 0, lg = 0;
  for (size_t i = 0; i + kHeaderFields <= p.header.size(); i += kHeaderFields) {
    Sequence s;
    s.index = p.header[i];
    const size_t n = static_cast<size_t>(p.header[i + 1]);
    const size_t nl = static_cast<size_t>(p.header[i + 3]);
    s.finish_reason = static_cast<FinishReason>(p.header[i + 2]);
    s.preemptions = p.header[i + 4];
    s.arrival_s = double_of(p.header[i + 5]);
    s.admitted_s = double_of(p.header[i + 6]);
    s.output.assign(p.tokens.begin() + tok, p.tokens.begin() + tok + n);
    s.token_times_s.assign(p.times.begin() + tok, p.times.begin() + tok + n);
    s.logits.assign(p.logits.begin() + lg, p.logits.begin() + lg + nl);
    s.state = Sequence::State::Finished;
    tok += n;
    lg += nl;
    out.push_back(std::move(s));
  }
}

}  // namespace

std::vector<Sequence> gather_sequences(Communicator& world, const std::vector<int>& reporters,
                                       std::vector<Sequence>& mine) {
  const int rank = world.rank();
  const bool reporter = std::find(reporters.begin(), reporters.end(), rank) != reporters.end();
  std::vector<Sequence> all;
  if (rank != 0) {
    if (!reporter) return all;
    Packed p = pack(mine);
    std::vector<int64_t> sizes = {static_cast<int64_t>(p.header.size()),
                                  static_cast<int64_t>(p.tokens.size()),
                                  static_cast<int64_t>(p.logits.size())};
    world.send(view_of(sizes, DType::I64), 0, kTagCount);
    world.send(view_of(p.header, DType::I64), 0, kTagHeader);
    world.send(view_of(p.tokens, DType::I32), 0, kTagTokens);
    world.send(view_of(p.times, DType::I64), 0, kTagTimes);
    world.send(view_of(p.logits, DType::F32), 0, kTagLogits);
    return all;
  }
  for (int source : reporters) {
    if (source == 0) {
      for (Sequence& s : mine) all.push_back(s);
      continue;
    }
    std::vector<int64_t> sizes(3);
    Tensor sizes_t = view_of(sizes, DType::I64);
    world.recv(sizes_t, source, kTagCount);
    Packed p;
    p.header.resize(static_cast<size_t>(sizes[0]));
    p.tokens.resize(static_cast<size_t>(sizes[1]));
    p.times.resize(static_cast<size_t>(sizes[1]));
    p.logits.resize(static_cast<size_t>(sizes[2]));
    Tensor h = view_of(p.header, DType::I64), t = view_of(p.tokens, DType::I32),
           d = view_of(p.times, DType::I64), l = view_of(p.logits, DType::F32);
    world.recv(h, source, kTagHeader);
    world.recv(t, source, kTagTokens);
    world.recv(d, source, kTagTimes);
    world.recv(l, source, kTagLogits);
    unpack(p, all);
  }
  std::sort(all.begin(), all.end(),
            [](const Sequence& a, const Sequence& b) { return a.index < b.index; });
  return all;
}

std::vector<int64_t> gather_expert_tokens(ParallelGroups& groups, ModelForward& forward, const ShardSpec& shard,
                                          const ModelConfig& config, bool counted_here) {
  const int64_t E = std::max<int64_t>(config.num_experts, 1);
  std::vector<int64_t> expert_tokens(static_cast<size_t>(config.num_layers * E), 0);
  const std::vector<int64_t> local_counts = forward.expert_counts();
  if (counted_here)
    std::copy(local_counts.begin(), local_counts.end(),
              expert_tokens.begin() + static_cast<std::ptrdiff_t>(shard.layer_begin * E));
  groups.world->allreduce_host(expert_tokens, false);
  return expert_tokens;
}

ExpertRouting gather_expert_routing(ParallelGroups& groups, ModelForward& forward, const ShardSpec& shard,
                                    const ModelConfig& config, bool counted_here,
                                    const std::vector<int64_t>& window_counts,
                                    const std::vector<std::pair<int64_t, int64_t>>& window_ranges) {
  const size_t E = static_cast<size_t>(std::max<int64_t>(config.num_experts, 1));
  const size_t layers = static_cast<size_t>(config.num_layers), windows = window_ranges.size();
  const size_t local = static_cast<size_t>(shard.layer_end - shard.layer_begin);
  const size_t first = static_cast<size_t>(shard.layer_begin);
  ExpertRouting r;
  r.tokens_by_window.assign(windows * layers * E, 0);
  r.coactivation.assign(layers * E * E, 0);
  if (counted_here) {
    MOETRON_ASSERT(window_counts.size() == windows * local * E);
    for (size_t w = 0; w < windows; ++w)
      std::copy_n(window_counts.begin() + static_cast<std::ptrdiff_t>(w * local * E), local * E,
                  r.tokens_by_window.begin() + static_cast<std::ptrdiff_t>((w * layers + first) * E));
    const std::vector<int64_t> pairs = forward.coactivation_counts();
    std::copy(pairs.begin(), pairs.end(), r.coactivation.begin() + static_cast<std::ptrdiff_t>(first * E * E));
  }
  groups.world->allreduce_host(r.tokens_by_window, false);
  groups.world->allreduce_host(r.coactivation, false);
  for (const auto& [begin, end] : window_ranges) r.window_steps.insert(r.window_steps.end(), {begin, end});
  return r;
}

namespace {

// Every rank's `mine` (as many values on each), by world rank: [world * mine.size()]
// (collective: a sum in which each rank fills only its own slots).
std::vector<int64_t> gather_per_rank(ParallelGroups& groups, int world_size, const std::vector<int64_t>& mine) {
  std::vector<int64_t> all(static_cast<size_t>(world_size) * mine.size(), 0);
  std::copy(mine.begin(), mine.end(), all.begin() + static_cast<std::ptrdiff_t>(groups.world_rank * mine.size()));
  groups.world->allreduce_host(all, false);
  return all;
}

// Seconds travel as integer nanoseconds: the host all-reduce takes int64.
int64_t to_ns(double seconds) { return std::isfinite(seconds) ? static_cast<int64_t>(seconds * 1e9) : 0; }
double from_ns(int64_t ns) { return static_cast<double>(ns) * 1e-9; }

}  // namespace

RanksExpertWork gather_expert_work(ParallelGroups& groups, ModelForward& forward, int world_size) {
  const ExpertWork mine = forward.expert_work();
  const std::vector<int64_t> values = gather_per_rank(groups, world_size, {mine.tokens, to_ns(mine.seconds)});
  RanksExpertWork all;
  for (size_t r = 0; r < static_cast<size_t>(world_size); ++r) {
    all.tokens.push_back(values[r * 2]);
    all.seconds.push_back(from_ns(values[r * 2 + 1]));
  }
  return all;
}

RanksCommWait gather_comm_wait(ParallelGroups& groups, double decode_s, double prefill_s, int world_size) {
  const std::vector<int64_t> values = gather_per_rank(groups, world_size, {to_ns(decode_s), to_ns(prefill_s)});
  RanksCommWait all;
  for (size_t r = 0; r < static_cast<size_t>(world_size); ++r) {
    all.decode_s.push_back(from_ns(values[r * 2]));
    all.prefill_s.push_back(from_ns(values[r * 2 + 1]));
  }
  return all;
}

std::vector<int64_t> gather_traffic(ParallelGroups& groups, int world_size) {
  std::vector<int64_t> mine(kRankFields, 0);
  for (const auto& comm : {groups.tp, groups.stage, groups.replica, groups.pipeline, groups.world}) {
    if (!comm) continue;
    const Traffic t = comm->traffic();
    mine[0] += t.sent;
    mine[1] += t.received;
  }
  return gather_per_rank(groups, world_size, mine);
}

RankPlaces gather_places(const Ops& ops, const std::string& gpu_uuid, MPI_Comm world) {
  const bool on_gpu = ops.device() == Device::Cuda && !gpu_uuid.empty();
  RankPlaces p;
  p.hosts = allgather_strings(host_name(), world);
  p.devices = allgather_strings(on_gpu ? ops.name() + " " + gpu_uuid : ops.name(), world);
  return p;
}

}  // namespace moetron
