// The CPU backend's face to the rest of the engine (moetron/backend/cpu_ops.hpp): making one, its
// threads, and the one figure callers read off it. The methods of CpuOps are in cpu_memory, cpu_dense,
// cpu_attention and cpu_moe.
#include "moetron/backend/cpu_ops.hpp"

#include "cpu_math.hpp"
#include "cpu_ops.hpp"

namespace moetron {

std::unique_ptr<Ops> make_cpu_ops() { return std::make_unique<CpuOps>(); }

void set_cpu_threads(int threads) { cpu::set_threads(threads); }
int cpu_threads() { return cpu::threads(); }
int cpu_usable_cores() { return cpu::usable_cores(); }
std::vector<int> cpu_affinity_cores() { return cpu::affinity_cores(); }
int cpu_node_cores() { return cpu::node_cores(); }
int cpu_threads_for_rank(int usable_cores, int node_cores, int ranks_on_node) {
  return cpu::threads_for_rank(usable_cores, node_cores, ranks_on_node);
}

size_t cpu_peak_temp_bytes(const Ops& ops) {
  const auto* cpu = dynamic_cast<const CpuOps*>(&ops);
  MOETRON_CHECK(cpu != nullptr, "cpu_peak_temp_bytes: " << ops.name() << " is not the CPU backend");
  return cpu->peak_temp_bytes();
}

}  // namespace moetron
