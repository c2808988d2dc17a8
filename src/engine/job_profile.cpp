#include "moetron/engine/job_profile.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <set>

#include "moetron/bench/comm_bench.hpp"
#include "moetron/bench/compute_bench.hpp"
#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/format.hpp"
#include "moetron/engine/host_step_bench.hpp"
#include "moetron/version.hpp"

namespace moetron {
namespace {

// Where the job's ranks sit: hosts, and the peer that rank 0 ping-pongs with over the world.
struct JobPlaces {
  int nodes = 1, ranks_per_node = 1, world_peer = 1;
  std::string host;  // world rank 0's
};

JobPlaces job_places() {
  const std::vector<std::string> hosts = allgather_strings(host_name(), MPI_COMM_WORLD);
  JobPlaces p;
  p.host = hosts[0];
  p.nodes = static_cast<int>(std::set<std::string>(hosts.begin(), hosts.end()).size());
  for (const std::string& h : hosts)
    p.ranks_per_node = std::max(p.ranks_per_node, static_cast<int>(std::count(hosts.begin(), hosts.end(), h)));
  for (size_t r = 1; r < hosts.size() && p.nodes > 1; ++r)
    if (hosts[r] != hosts[0]) {
      p.world_peer = static_cast<int>(r);
      break;
    }
  return p;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

void measure_collectives(Ops& ops, const DeviceBinding& binding, const JobPlaces& places,
                         const std::vector<int64_t>& bytes, const JobProfileSettings& settings, HardwareProfile& profile) {
  const TimingSettings& timing = settings.timing;
  std::shared_ptr<MpiCommunicator> world = make_mpi_communicator(MPI_COMM_WORLD);
  MPI_Comm node_comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world->rank(), MPI_INFO_NULL, &node_comm),
            "MPI_Comm_split_type (the ranks of this node)");
  auto node = std::make_shared<MpiCommunicator>(node_comm);
  const auto world_group = device_transport(world, ops, binding);
  // A line a size from world rank 0 only (each node's group has a rank 0 of its own).
  const auto progress = world->rank() == 0 ? settings.report : nullptr;
  run_comm_benchmarks(ops, {world_group.get(), places.nodes > 1, places.world_peer, progress}, bytes, timing, profile);
  if (places.nodes > 1) {  // on one node the node's group is the world's
    const auto node_group = device_transport(node, ops, binding);
    run_comm_benchmarks(ops, {node_group.get(), false, 1, progress}, bytes, timing, profile);
  }
  world->barrier();
}

}  // namespace

HardwareProfile measure_job_profile(const ModelConfig& config, const std::string& backend,
                                    const DeviceBinding& binding, const JobProfileSettings& settings) {
  int rank = 0, world_size = 1;
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world_size), "MPI_Comm_size");
  const int64_t memory = memory_per_rank(0, backend, binding);
  // The arena holds the temporaries of the largest expert sweep; a quarter of the memory at most.
  const size_t arena = static_cast<size_t>(std::min<int64_t>(8ll << 30, std::max<int64_t>(256ll << 20, memory / 4)));
  std::unique_ptr<Ops> ops = make_ops(backend, binding, arena);
  SizeChoice choice = settings.sizes;
  choice.gpu = backend == "cuda";
  choice.host_staged = binding.world_shares_gpu;  // the same on every rank: the sizes must agree
  const BenchSizes sizes = bench_sizes(config, choice);
  const JobPlaces places = job_places();

  HardwareProfile profile;
  if (rank == 0) {  // one rank computes, so ranks that share a device do not slow each other
    ComputeBench compute{&config, bench_shapes(config), sizes, settings.timing, settings.report, time_host_step};
    run_compute_benchmarks(*ops, compute, profile);
  }
  if (rank == 0 && settings.report)
    settings.report("collectives over " + std::to_string(world_size) + " ranks, " +
                    human_bytes(static_cast<double>(sizes.collective_bytes.front())) + " to " +
                    human_bytes(static_cast<double>(sizes.collective_bytes.back())) +
                    (choice.host_staged ? " (through host buffers: ranks share a GPU)" : ""));
  measure_collectives(*ops, binding, places, sizes.collective_bytes, settings, profile);
  if (rank != 0) return {};

  const DeviceIdentity device = identify_device(backend, binding);
  profile.origin = {device.name,
                    device.driver,
                    backend,
                    places.host,
                    kVersion,
                    kGitCommit,
                    utc_now(),
                    settings.command_line,
                    world_size,
                    places.ranks_per_node,
                    places.nodes,
                    memory,
                    settings.timing.warmup,
                    settings.timing.reps,
                    ops->kernel_settings()};
  profile.model_shapes = profile_model_shapes(config);
  return profile;
}

}  // namespace moetron
