// Prefill's expert GEMMs, one expert at a time but several at once: each expert's gate/up and
// down projections as cuBLASLt matmuls on its exact rows, the experts split into contiguous
// blocks of about equal rows, one block a stream (as many streams as the experts' size needs:
// expert_gemm_streams_for). One expert's GEMM (a few hundred rows) fills
// only part of the GPU; several streams let the next experts' GEMMs take the idle SMs and hide
// each call's host cost behind the others' work.
//
// Why cuBLASLt and not cublasGemmEx: with its exact row count every expert's call is a shape
// cublasGemmEx's heuristic has not seen (tens of us a call), and rounding the rows up to a few
// shapes (the earlier path) computed up to 255 padding rows an expert and let a call write into
// the next expert's rows, which rules out running experts concurrently. Here the heuristic runs
// once per bucket of rows (kRowBucket) and its algorithm serves every exact count in the bucket.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

namespace moetron {
namespace cuda {

// The operands of one MoE layer's expert GEMMs, row-major bf16: x_perm [rows, hidden] in expert
// order; gate_up_w [experts, 2 inter, hidden] (gate rows, then up rows); down_w [experts, hidden,
// inter]; outputs gate_up [rows, 2 inter], act [rows, inter] = silu(gate) * up, y [rows, hidden].
struct ExpertGemmOperands {
  const __nv_bfloat16* x_perm = nullptr;
  const __nv_bfloat16* gate_up_w = nullptr;
  const __nv_bfloat16* down_w = nullptr;
  int64_t hidden = 0, inter = 0;
  __nv_bfloat16* gate_up = nullptr;
  __nv_bfloat16* act = nullptr;
  __nv_bfloat16* y = nullptr;
};

class ExpertGemmStreams {
 public:
  // Up to `streams` side streams, used as expert_gemm_streams_for says for a GPU of `sms` SMs.
  ExpertGemmStreams(int streams, int sms);
  ~ExpertGemmStreams();
  ExpertGemmStreams(const ExpertGemmStreams&) = delete;
  ExpertGemmStreams& operator=(const ExpertGemmStreams&) = delete;

  // Enqueues the layer's GEMMs after the work already on `stream`; work enqueued on `stream`
  // afterwards waits for all of them.
  // Expert e's rows are [offsets[e], offsets[e + 1]) (a host copy, experts + 1 entries).
  void run(cudaStream_t stream, const std::vector<int32_t>& offsets, const ExpertGemmOperands& op);

  int streams() const { return static_cast<int>(side_.size()); }

 private:
  struct Algo {
    cublasLtMatmulAlgo_t algo;
    size_t workspace_bytes;
  };
  // out [m, n] = x [m, k] . w [n, k]^T on side stream s.
  void matmul(int s, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t m, int64_t n, int64_t k,
              __nv_bfloat16* out);
  Algo heuristic(int64_t m, int64_t n, int64_t k);

  cublasLtHandle_t lt_ = nullptr;
  cublasLtMatmulDesc_t desc_ = nullptr;
  std::vector<cudaStream_t> side_;
  std::vector<void*> workspace_;
  std::vector<cudaEvent_t> joined_;
  cudaEvent_t forked_ = nullptr;
  int sms_ = 1;
  std::map<std::tuple<int64_t, int64_t, int64_t>, Algo> algos_;  // by (row bucket, n, k)
  // By (exact rows, n, k): the counts their bucket's algorithm refused, so that a count seen
  // again (prefill repeats its expert shapes) does not ask the heuristic on every call.
  std::map<std::tuple<int64_t, int64_t, int64_t>, Algo> exact_algos_;
};

}  // namespace cuda
}  // namespace moetron
