#include "run_setup.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

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

namespace moetron::apps {

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

// Ranks on this node, for --plan auto's "tensor parallel within a node" and GPU selection.
int node_local_rank(int* ranks_on_node) {
  MPI_Comm local;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type");
  int rank = 0;
  check_mpi(MPI_Comm_rank(local, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(local, ranks_on_node), "MPI_Comm_size");
  check_mpi(MPI_Comm_free(&local), "MPI_Comm_free");
  return rank;
}

// What one rank's weights may take, for refusing plans that cannot fit before anything is
// loaded: --memory-per-rank, else the GPU's free memory, else the host's memory over the
// node's ranks. Every rank must refuse the same plans, so the smallest value over all ranks
// would be ideal; plans are validated per rank and a refusal on any rank ends the job.
int64_t memory_per_rank(const RunOptions& o, const std::string& backend, int local_rank, int ranks_on_node) {
  if (o.memory_per_rank > 0) return o.memory_per_rank;
#ifdef MOETRON_HAVE_CUDA
  if (backend == "cuda") {
    int devices = 0;
    size_t free_bytes = 0, total = 0;
    MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0, "no CUDA device");
    MOETRON_CHECK(cudaSetDevice(local_rank % devices) == cudaSuccess &&
                      cudaMemGetInfo(&free_bytes, &total) == cudaSuccess,
                  "cannot read the memory of CUDA device " << local_rank % devices);
    // Ranks sharing a GPU share its memory.
    const int sharing = std::max(1, (ranks_on_node + devices - 1) / devices);
    return static_cast<int64_t>(free_bytes) / sharing;
  }
#endif
  (void)backend;
  (void)local_rank;
  const int64_t host = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  return host / std::max(1, ranks_on_node);
}

ShardSpec shard_from_layout(const ShardLayout& l, const ModelConfig& c, const Plan& plan) {
  ShardSpec s;
  s.layer_begin = l.layers.begin;
  s.layer_end = l.layers.end;
  s.q_head_begin = l.q_heads.begin;
  s.q_head_count = l.q_heads.size();
  s.kv_head_begin = l.kv_heads.begin;
  s.kv_head_count = l.kv_heads.size();
  s.kv_replication = l.kv_replicated ? plan.tp / c.num_kv_heads : 1;
  s.mlp_col_begin = l.dense_columns.begin;
  s.mlp_col_count = l.dense_columns.size();
  s.shared_col_begin = l.shared_expert_columns.begin;
  s.shared_col_count = l.shared_expert_columns.size();
  s.expert_begin = l.experts.begin;
  s.expert_count = l.experts.size();
  s.expert_col_begin = l.expert_columns.begin;
  s.expert_col_count = l.expert_columns.size();
  s.vocab_begin = l.vocab.begin;
  s.vocab_count = l.vocab.size();
  s.vocab_rows = l.vocab_rows;
  s.first_stage = l.first_stage;
  s.last_stage = l.last_stage;
  s.holds_o_bias = l.coords.tp == 0;
  return s;
}

// Device memory for one step's temporaries (CudaOps reserves it once): the largest layer's
// scratch for max_tokens tokens (attention, router, the permuted expert rows and their
// intermediate activations, the shared expert) plus the logits of max_seqs rows, with slack.
// With several replicas, a decode step's fixed-capacity expert dispatch of max_seqs tokens
// (ModelForward::dispatch_capacity) sends, receives and runs experts on padded entries too.
size_t step_arena_bytes(const ModelConfig& c, const ShardSpec& s, const Plan& plan,
                        int64_t max_tokens, int64_t max_seqs) {
  const int64_t hd = c.head_dim, k = std::max<int64_t>(c.top_k, 1);
  const int64_t q = s.q_head_count * hd, kv = s.kv_head_count * hd;
  const int64_t per_token_elems =
      4 * c.hidden_size + 3 * q + 3 * kv + c.num_experts + 4 * k +
      k * (2 * c.hidden_size + 3 * std::max(s.expert_col_count, int64_t{1})) +
      3 * std::max(s.shared_col_count, s.mlp_col_count) + c.hidden_size;
  // Per row: the hidden state, the LM head's bf16 and f32 slices, their tp-way gather, the row.
  const int64_t logits_bytes =
      max_seqs * (c.hidden_size * 4 + s.vocab_rows * 6 + (plan.tp * s.vocab_rows + c.vocab_size) * 4);
  int64_t dispatch_bytes = 0;
  if (plan.dp > 1) {
    const int64_t entries = static_cast<int64_t>(plan.tp) * plan.dp * ((max_seqs + plan.tp - 1) / plan.tp) *
                            std::min<int64_t>(k, c.num_experts / plan.ep);
    // send, received, expert output and returned rows, the permuted copies, ids and weights
    dispatch_bytes = entries * ((6 * c.hidden_size + 2 * std::max(s.expert_col_count, int64_t{1})) * 2 + 32);
  }
  const double bytes =
      static_cast<double>(max_tokens * per_token_elems * 2 + logits_bytes + dispatch_bytes) * 1.25;
  return static_cast<size_t>(bytes) + (64u << 20);
}

std::unique_ptr<Ops> make_ops(const std::string& backend, int local_rank, size_t arena_bytes) {
  if (backend == "cpu") return make_cpu_ops();
#ifdef MOETRON_HAVE_CUDA
  int devices = 0;
  MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0, "no CUDA device");
  return make_cuda_ops(local_rank % devices, arena_bytes);
#else
  (void)local_rank;
  (void)arena_bytes;
  MOETRON_FAIL("no CUDA backend in this build");
#endif
}

// Groups that carry device tensors (tp, stage, pipeline) get a device transport: NCCL when
// every rank on this node has a GPU of its own, else MPI through host buffers (NCCL refuses
// two ranks on one GPU). The world and replica groups carry only host data and stay on MPI.
void use_device_transport(ParallelGroups& g, Ops& ops, int ranks_on_node) {
  if (ops.device() != Device::Cuda) return;
#ifdef MOETRON_HAVE_CUDA
  int devices = 0;
  MOETRON_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess, "cudaGetDeviceCount failed");
  // Every rank must choose the same transport, so the node with the most ranks per GPU decides.
  std::vector<int64_t> shares_gpu = {ranks_on_node > devices ? 1 : 0};
  g.world->allreduce_host(shares_gpu, /*max_instead_of_sum=*/true);
  const bool nccl = shares_gpu[0] == 0;
  if (!nccl)
    LOG_INFO(ranks_on_node << " ranks share " << devices
                           << " GPU(s) on this node: NCCL refuses that, so the MPI transport carries "
                              "device tensors through host memory");
  auto* cuda = dynamic_cast<CudaOps*>(&ops);
  for (std::shared_ptr<Communicator>* group : {&g.tp, &g.stage, &g.pipeline}) {
    auto mpi = std::dynamic_pointer_cast<MpiCommunicator>(*group);
    if (!mpi) continue;  // a group of one moves nothing
    if (nccl) {
      *group = make_nccl_communicator(mpi, cuda->stream());
    } else {
      *group = make_staged_communicator(mpi, ops);
    }
  }
#else
  (void)g;
  (void)ranks_on_node;
#endif
}

}  // namespace moetron::apps
