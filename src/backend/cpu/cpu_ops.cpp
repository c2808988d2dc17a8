// The CPU backend's face to the rest of the engine (moetron/backend/cpu_ops.hpp): making one,
// and the one figure callers read off it. The methods of CpuOps are in cpu_memory, cpu_dense,
// cpu_attention and cpu_moe.
#include "moetron/backend/cpu_ops.hpp"

#include "cpu_ops.hpp"

namespace moetron {

std::unique_ptr<Ops> make_cpu_ops() { return std::make_unique<CpuOps>(); }

size_t cpu_peak_temp_bytes(const Ops& ops) {
  const auto* cpu = dynamic_cast<const CpuOps*>(&ops);
  MOETRON_CHECK(cpu != nullptr, "cpu_peak_temp_bytes: " << ops.name() << " is not the CPU backend");
  return cpu->peak_temp_bytes();
}

}  // namespace moetron
