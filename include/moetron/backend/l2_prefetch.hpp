// How much of a decode step's weights to ask the L2 cache for ahead of use
// (MOETRON_L2_PREFETCH_MIB, CudaOps::set_l2_prefetch_mib; sm_90+, where the bulk prefetch
// instruction exists). The arithmetic lives here, host-device, so the CPU tests check what the
// kernels issue.
//
// Why: at batch 1 a layer is a chain of short kernels (router, routing, norms, attention) during
// which HBM idles, then expert GEMVs that stream tens of MB and cannot start loading before the
// routing says which experts (perf/NOTES.md: what is left of batch 1 is the kernels' own ramp
// and the dependent loads at each start, not launches). Once the routing kernel has counted the
// rows it knows the experts, so it asks for the head of each chosen expert's gate, up and down
// matrices while the next kernels launch; a dense GEMV asks for its whole weight slab before its
// PDL wait (the previous kernel still running). Bytes already in L2 when the GEMVs read them are
// bytes HBM no longer has to stream on the critical path. The budget stays well under the L2
// (50 MiB on an H100 or H200), so what is asked for is still there when it is read.
#pragma once
#include <cstdint>

#include "moetron/core/host_device.hpp"

namespace moetron {

// The largest budget a layer's experts may ask for (MiB): a third of an H100/H200's L2 for each
// of gate, up and down at most.
constexpr int kMaxL2PrefetchMib = 48;
// One bulk prefetch instruction covers at most this much (the kernels loop over a range).
constexpr int64_t kL2PrefetchChunkBytes = 256 * 1024;

// Bytes of each of an expert's three matrices (gate, up and down: inter x hidden bf16 each) to
// prefetch when `active` local experts have rows and the layer's budget is `budget_bytes`: an
// equal share of the budget, a third for each matrix, at most the matrix, rounded down to the
// 16 bytes the instruction needs. 0 where there is no budget or no active expert.
MOETRON_HOST_DEVICE inline int64_t expert_prefetch_bytes(int64_t budget_bytes, int64_t active, int64_t hidden,
                                                         int64_t inter) {
  if (budget_bytes <= 0 || active <= 0) return 0;
  const int64_t matrix = hidden * inter * 2;
  int64_t share = budget_bytes / active / 3;
  if (share > matrix) share = matrix;
  return share / 16 * 16;
}

}  // namespace moetron
