#include "moetron/engine/device_setup.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/comm/staged_communicator.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#ifdef MOETRON_HAVE_CUDA
#include <cuda_runtime.h>

#include "moetron/backend/cuda_ops.hpp"
#include "moetron/comm/nccl_communicator.hpp"
#endif

namespace moetron {
namespace {

#ifdef MOETRON_HAVE_CUDA
#define CUDA_QUERY(call, what)                                                                   \
  do {                                                                                           \
    cudaError_t rc_ = (call);                                                                    \
    MOETRON_CHECK(rc_ == cudaSuccess, what << ": " << #call << " failed: " << cudaGetErrorString(rc_)); \
  } while (0)

// The UUIDs of the devices this process sees, in CUDA's order, written as nvidia-smi does.
std::vector<std::string> visible_gpu_uuids() {
  int count = 0;
  CUDA_QUERY(cudaGetDeviceCount(&count), "counting the visible CUDA devices");
  std::vector<std::string> uuids;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    CUDA_QUERY(cudaGetDeviceProperties(&prop, d), "reading CUDA device " << d);
    const auto* b = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
    char text[64];
    std::snprintf(text, sizeof text,
                  "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                  b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    uuids.emplace_back(text);
  }
  return uuids;
}
#endif

int world_rank_of(MPI_Comm world) {
  int rank = 0;
  check_mpi(MPI_Comm_rank(world, &rank), "MPI_Comm_rank");
  return rank;
}

// MOETRON_TEST_MEMORY_PER_RANK: the bytes world rank r plans with (entry r mod count).
bool test_hook_memory(int64_t* bytes) {
  const char* hook = std::getenv("MOETRON_TEST_MEMORY_PER_RANK");
  if (hook == nullptr) return false;
  std::vector<std::string> entries;
  std::string entry;
  std::istringstream in(hook);
  while (std::getline(in, entry, ';')) entries.push_back(entry);
  MOETRON_CHECK(!entries.empty(), "MOETRON_TEST_MEMORY_PER_RANK is empty");
  const std::string& mine = entries[static_cast<size_t>(world_rank_of(MPI_COMM_WORLD)) % entries.size()];
  try {
    size_t used = 0;
    *bytes = std::stoll(mine, &used);
    MOETRON_CHECK(used == mine.size() && *bytes > 0, "");
  } catch (const std::exception&) {
    MOETRON_FAIL("MOETRON_TEST_MEMORY_PER_RANK: '" << mine << "' is not a positive number of bytes");
  }
  return true;
}

}  // namespace

std::string resolve_backend(const std::string& requested) {
#ifdef MOETRON_HAVE_CUDA
  const bool gpu = cuda_device_available();
#else
  const bool gpu = false;
#endif
  if (requested == "auto") return gpu ? "cuda" : "cpu";
  if (requested == "cuda") {
#ifndef MOETRON_HAVE_CUDA
    MOETRON_FAIL("--backend cuda: this build has no CUDA backend (rebuild with nvcc present)");
#endif
    MOETRON_CHECK(gpu, "--backend cuda: no CUDA device is visible to this process");
  }
  return requested;
}

DeviceBinding bind_rank_devices(MPI_Comm world, const std::string& backend, std::vector<RankDevices>* all) {
  const int rank = world_rank_of(world);
  RankDevices mine;
  const bool hooked = test_hook_uuids(rank, &mine.uuids);
  if (!hooked) {
#ifdef MOETRON_HAVE_CUDA
    if (backend == "cuda") mine.uuids = visible_gpu_uuids();
#endif
  }
  (void)backend;
  std::vector<RankDevices> ranks = gather_rank_devices(world, mine);
  std::vector<DeviceBinding> bindings = bind_devices(ranks);
  for (const std::string& line : describe_bindings(ranks, bindings))
    LOG_INFO(line << (hooked ? " [devices from the test hook MOETRON_TEST_GPU_UUIDS]" : ""));
  DeviceBinding me = bindings[static_cast<size_t>(rank)];
  if (all) *all = std::move(ranks);
  return me;
}

int64_t memory_per_rank(int64_t requested, const std::string& backend, const DeviceBinding& binding,
                        std::string* source) {
  std::string ignored;
  std::string& from = source ? *source : ignored;
  from = "--memory-per-rank";
  if (requested > 0) return requested;
  from = "MOETRON_TEST_MEMORY_PER_RANK";
  int64_t hooked = 0;
  if (test_hook_memory(&hooked)) return hooked;
#ifdef MOETRON_HAVE_CUDA
  if (backend == "cuda") {
    from = "the GPU's free memory over the ranks sharing it";
    size_t free_bytes = 0, total = 0;
    MOETRON_CHECK(binding.device >= 0, "no CUDA device is bound to this rank");
    CUDA_QUERY(cudaSetDevice(binding.device), "selecting CUDA device " << binding.device);
    CUDA_QUERY(cudaMemGetInfo(&free_bytes, &total), "reading the memory of CUDA device " << binding.device);
    // Ranks sharing a GPU share its memory.
    return static_cast<int64_t>(free_bytes) / std::max(1, binding.ranks_sharing_device);
  }
#endif
  (void)backend;
  from = "the host's memory over the node's ranks";
  const int64_t host = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  return host / std::max(1, binding.ranks_on_node);
}

namespace {
// The cores the node's ranks run on together: the binding's union of their affinities, else the
// host's.
int cores_of_node(const DeviceBinding& binding) {
  return binding.cores_on_node > 0 ? binding.cores_on_node : cpu_node_cores();
}
}  // namespace

int cpu_threads_of_rank(const DeviceBinding& binding) {
  if (const char* set = std::getenv("MOETRON_CPU_THREADS")) {
    const std::string text = set;
    try {
      size_t used = 0;
      const int threads = std::stoi(text, &used);
      if (used == text.size() && threads > 0) return threads;
    } catch (const std::exception&) {
    }
    MOETRON_FAIL("MOETRON_CPU_THREADS: '" << text << "' is not a positive number of threads");
  }
  return cpu_threads_for_rank(cpu_usable_cores(), cores_of_node(binding), binding.ranks_on_node);
}

double ranks_per_device(const std::string& backend, const DeviceBinding& binding) {
  if (backend != "cpu") return std::max(1, binding.ranks_sharing_device);
  const double wanted = static_cast<double>(binding.ranks_on_node) * cpu_threads_of_rank(binding);
  return std::max(1.0, wanted / cores_of_node(binding));
}

std::unique_ptr<Ops> make_ops(const std::string& backend, const DeviceBinding& binding, size_t arena_bytes) {
  if (backend == "cpu") {
    const int threads = cpu_threads_of_rank(binding);
    set_cpu_threads(threads);
    static bool told = false;  // once a process, though a run makes its Ops more than once
    if (binding.node_local_rank == 0 && !std::exchange(told, true))
      LOG_INFO("cpu backend: " << threads << " thread(s) a rank, " << binding.ranks_on_node << " rank(s) on "
                               << cores_of_node(binding) << " cores of this node"
                               << (std::getenv("MOETRON_CPU_THREADS") ? " (MOETRON_CPU_THREADS)" : ""));
    return make_cpu_ops();
  }
#ifdef MOETRON_HAVE_CUDA
  MOETRON_CHECK(binding.device >= 0, "--backend " << backend << ": no CUDA device is bound to this rank");
  return make_cuda_ops(binding.device, arena_bytes);
#else
  (void)binding;
  (void)arena_bytes;
  MOETRON_FAIL("--backend " << backend << ": no CUDA backend in this build");
#endif
}

std::string kernel_settings_by_env(const std::string& backend) {
#ifdef MOETRON_HAVE_CUDA
  if (backend == "cuda") return cuda_kernel_settings_by_env();
#endif
  (void)backend;
  return "";  // the CPU backend has no kernel choices
}

DeviceIdentity identify_device(const std::string& backend, const DeviceBinding& binding) {
#ifdef MOETRON_HAVE_CUDA
  if (backend == "cuda") {
    MOETRON_CHECK(binding.device >= 0, "--backend cuda: no CUDA device is bound to this rank");
    cudaDeviceProp prop{};
    CUDA_QUERY(cudaGetDeviceProperties(&prop, binding.device), "reading CUDA device " << binding.device);
    int driver = 0, runtime = 0;
    CUDA_QUERY(cudaDriverGetVersion(&driver), "reading the CUDA driver version");
    CUDA_QUERY(cudaRuntimeGetVersion(&runtime), "reading the CUDA runtime version");
    auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
    return {prop.name, "CUDA driver " + version(driver) + ", runtime " + version(runtime)};
  }
#endif
  (void)backend;
  (void)binding;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos)
      return {line.substr(line.find(':') + 2), "cpu"};
  return {"cpu", "cpu"};
}

std::shared_ptr<Communicator> device_transport(std::shared_ptr<MpiCommunicator> group, Ops& ops,
                                               const DeviceBinding& binding) {
  if (ops.device() != Device::Cuda) return group;
#ifdef MOETRON_HAVE_CUDA
  // Every rank computed the binding from the same gathered records, so all choose alike.
  auto* cuda = dynamic_cast<CudaOps*>(&ops);
  MOETRON_CHECK(cuda != nullptr, "device transport: CUDA tensors from Ops that are not CudaOps");
  if (binding.transport == "nccl") return make_nccl_communicator(group, cuda->stream());
  return make_staged_communicator(group, ops);
#else
  (void)binding;
  return group;
#endif
}

void use_device_transport(ParallelGroups& g, Ops& ops, const DeviceBinding& binding) {
  for (std::shared_ptr<Communicator>* group : {&g.tp, &g.stage, &g.pipeline}) {
    auto mpi = std::dynamic_pointer_cast<MpiCommunicator>(*group);
    if (!mpi) continue;  // a group of one moves nothing
    *group = device_transport(mpi, ops, binding);
  }
}

}  // namespace moetron
