// What `moetron bench` measures for one model: the shapes (the model's own, as one rank of each
// tensor-parallel degree sees them) and the sizes swept for each (log-spaced; smaller on the CPU
// backend and with --quick). The sizes are chosen so that the GPU default finishes in well under
// 30 s on one H200 for a model of Qwen3-30B-A3B's shapes (estimate: docs/profile-schema.md).
#pragma once
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "moetron/model/config.hpp"

namespace moetron {

struct BenchShapes {
  std::vector<std::pair<int64_t, int64_t>> gemms;     // (n, k): q, k/v, o, router, dense MLP, shared expert, LM head
  std::vector<std::pair<int64_t, int64_t>> experts;   // (hidden, expert columns)
  std::vector<std::array<int64_t, 3>> attention;      // (q heads, kv heads, head_dim)
};

// The distinct shapes of `config` for tp = 1 and each degree of `tp_degrees` that is a valid plan.
// Up to tp = 64: a shard below the smallest measured shape is priced by scaling a larger one
// down by its work, which kernels with floors do not follow (emulated tp = 16 and 32 plans on
// the H200 were under-predicted by 28-70% with tp <= 8 measured, perf/PREDICTOR.md).
BenchShapes bench_shapes(const ModelConfig& config, const std::vector<int>& tp_degrees = {1, 2, 4, 8, 16, 32, 64});

struct BenchSizes {
  std::vector<int64_t> tokens;             // dense GEMMs, memory-bound kernels
  std::vector<int64_t> tokens_per_expert;  // grouped expert GEMM ...
  std::vector<int64_t> experts;            // ... by active experts
  int64_t max_expert_rows = 0;             // tokens_per_expert * experts at most
  std::vector<int64_t> gemv_tokens;        // expert calls on the GEMV path: 1, 2, 4 ... kExpertGemvMaxTokens
  std::vector<int64_t> decode_batch, contexts;  // decode attention: batch x context
  std::vector<int64_t> prefill_sequences;  // prefill attention: sequences x context (rows <= tokens.back())
  std::vector<int64_t> collective_bytes;
  int64_t copy_bytes = 0;                  // the HBM copy's buffer
};

struct SizeChoice {
  bool gpu = false, quick = false;
  int64_t max_tokens = 0;  // 0: the default's
  int64_t max_bytes = 0;   // 0: the default's
  // Collectives go through host buffers (GPU ranks sharing a GPU: the MPI transport). Up to
  // 256 MiB there, every collective and repetition staged through the host, a 2-rank bench on one
  // H200 had not finished after 150 s, so the default stops at 16 MiB; the predictor extrapolates
  // past the largest point linearly, as a copy-bound transport behaves.
  bool host_staged = false;
};

BenchSizes bench_sizes(const ModelConfig& config, const SizeChoice& choice);

// first, first * factor, ... up to `last`, which is always included (first <= last).
std::vector<int64_t> geometric_sizes(int64_t first, int64_t last, int64_t factor);

}  // namespace moetron
