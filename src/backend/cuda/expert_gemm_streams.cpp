#include "expert_gemm_streams.hpp"

#include <algorithm>
#include <limits>

#include "cublas_gemm.hpp"
#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/error.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace cuda {
namespace {

// Per stream: split-K partials of one expert's GEMM need at most rows x n x 4 bytes (a few MiB
// at prefill sizes); the heuristic only offers algorithms that fit.
constexpr size_t kWorkspaceBytes = 8u << 20;
// Rows an algorithm is chosen for: the bucket's top count serves every count in the bucket.
constexpr int64_t kRowBucket = 128;

int64_t row_bucket(int64_t m) { return (m + kRowBucket - 1) / kRowBucket * kRowBucket; }

// A column-major bf16 matrix of rows x cols, leading dimension ld; destroyed with the scope.
class Layout {
 public:
  Layout(int64_t rows, int64_t cols, int64_t ld) {
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout_, CUDA_R_16BF, static_cast<uint64_t>(rows),
                                            static_cast<uint64_t>(cols), ld));
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(layout_); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
  operator cublasLtMatrixLayout_t() const { return layout_; }

 private:
  cublasLtMatrixLayout_t layout_ = nullptr;
};

// The row-major out [m, n] = x [m, k] . w [n, k]^T in cuBLAS's column-major terms (as gemm_nt):
// out^T [n, m] = op(A) . B with A = w seen as a column-major [k, n] matrix, transposed, and
// B = x^T as a column-major [k, m].
struct Layouts {
  Layouts(int64_t m, int64_t n, int64_t k) : a(k, n, k), b(k, m, k), c(n, m, n) {}
  Layout a, b, c;
};

}  // namespace

ExpertGemmStreams::ExpertGemmStreams(int streams, int sms) : sms_(sms) {
  MOETRON_CHECK(streams >= 1, "expert GEMM streams must be >= 1, got " << streams);
  CUBLAS_CHECK(cublasLtCreate(&lt_));
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)));
  CUDA_CHECK(cudaEventCreateWithFlags(&forked_, cudaEventDisableTiming));
  side_.resize(static_cast<size_t>(streams));
  workspace_.resize(side_.size());
  joined_.resize(side_.size());
  for (size_t s = 0; s < side_.size(); ++s) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&side_[s], cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc(&workspace_[s], kWorkspaceBytes));
    CUDA_CHECK(cudaEventCreateWithFlags(&joined_[s], cudaEventDisableTiming));
  }
}

ExpertGemmStreams::~ExpertGemmStreams() {
  // Destructors must not throw: release what exists and ignore late errors.
  for (size_t s = 0; s < side_.size(); ++s) {
    if (side_[s]) cudaStreamSynchronize(side_[s]);
    if (side_[s]) cudaStreamDestroy(side_[s]);
    cudaFree(workspace_[s]);
    if (joined_[s]) cudaEventDestroy(joined_[s]);
  }
  if (forked_) cudaEventDestroy(forked_);
  if (desc_) cublasLtMatmulDescDestroy(desc_);
  if (lt_) cublasLtDestroy(lt_);
}

ExpertGemmStreams::Algo ExpertGemmStreams::heuristic(int64_t m, int64_t n, int64_t k) {
  const Layouts l(m, n, k);
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t max_workspace = kWorkspaceBytes;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = [&] {
    const cublasStatus_t set = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace, sizeof(max_workspace));
    if (set != CUBLAS_STATUS_SUCCESS) return set;
    return cublasLtMatmulAlgoGetHeuristic(lt_, desc_, l.a, l.b, l.c, l.c, pref, 1, &result, &found);
  }();
  cublasLtMatmulPreferenceDestroy(pref);
  CUBLAS_CHECK(status);
  MOETRON_CHECK(found > 0 && result.state == CUBLAS_STATUS_SUCCESS,
                "cuBLASLt offers no algorithm for the expert GEMM " << m << " x " << n << " x " << k);
  return {result.algo, result.workspaceSize};
}

void ExpertGemmStreams::matmul(int s, const __nv_bfloat16* x, const __nv_bfloat16* w, int64_t m, int64_t n,
                               int64_t k, __nv_bfloat16* out) {
  if (m == 0) return;
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  MOETRON_CHECK(m <= kMax && n <= kMax && k <= kMax,
                "expert GEMM of " << m << " x " << n << " x " << k << " exceeds cuBLAS's 32-bit dimensions");
  const auto key = std::make_tuple(row_bucket(m), n, k);
  auto it = algos_.find(key);
  if (it == algos_.end()) it = algos_.emplace(key, heuristic(row_bucket(m), n, k)).first;
  const Layouts l(m, n, k);
  const float alpha = 1.0f, beta = 0.0f;
  const size_t si = static_cast<size_t>(s);
  auto call = [&](const Algo& a) {
    return cublasLtMatmul(lt_, desc_, &alpha, w, l.a, x, l.b, &beta, out, l.c, out, l.c, &a.algo,
                          workspace_[si], a.workspace_bytes, side_[si]);
  };
  const auto exact = std::make_tuple(m, n, k);
  auto own = exact_algos_.find(exact);
  if (own != exact_algos_.end()) {
    CUBLAS_CHECK(call(own->second));
    return;
  }
  cublasStatus_t status = call(it->second);
  // The bucket's algorithm may not take this exact count: then the count's own, kept.
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) {
    own = exact_algos_.emplace(exact, heuristic(m, n, k)).first;
    status = call(own->second);
  }
  CUBLAS_CHECK(status);
}

void ExpertGemmStreams::run(cudaStream_t stream, const std::vector<int32_t>& offsets,
                            const ExpertGemmOperands& op) {
  const int64_t hidden = op.hidden, inter = op.inter;
  int64_t active = 0;  // experts with rows
  for (size_t e = 0; e + 1 < offsets.size(); ++e) active += offsets[e + 1] > offsets[e];
  const double mean_rows = active > 0 ? static_cast<double>(offsets.back() - offsets.front()) / static_cast<double>(active) : 0;
  const std::vector<int64_t> edges =
      split_experts_by_rows(offsets, expert_gemm_streams_for(mean_rows, 2 * inter, sms_, streams()));
  CUDA_CHECK(cudaEventRecord(forked_, stream));
  for (size_t b = 0; b + 1 < edges.size(); ++b) {
    const int s = static_cast<int>(b);
    cudaStream_t side = side_[b];
    CUDA_CHECK(cudaStreamWaitEvent(side, forked_, 0));
    const int64_t e_begin = edges[b], e_end = edges[b + 1];
    const int64_t r_begin = offsets[static_cast<size_t>(e_begin)], r_end = offsets[static_cast<size_t>(e_end)];
    auto rows_of = [&](int64_t e, int64_t* first) {
      *first = offsets[static_cast<size_t>(e)];
      return offsets[static_cast<size_t>(e) + 1] - *first;
    };
    int64_t first = 0;
    for (int64_t e = e_begin; e < e_end; ++e) {
      const int64_t m = rows_of(e, &first);
      matmul(s, op.x_perm + first * hidden, op.gate_up_w + e * 2 * inter * hidden, m, 2 * inter, hidden,
             op.gate_up + first * 2 * inter);
    }
    kernels::silu_mul(op.gate_up + r_begin * 2 * inter, r_end - r_begin, inter, op.act + r_begin * inter, side);
    for (int64_t e = e_begin; e < e_end; ++e) {
      const int64_t m = rows_of(e, &first);
      matmul(s, op.act + first * inter, op.down_w + e * hidden * inter, m, hidden, inter, op.y + first * hidden);
    }
    CUDA_CHECK(cudaEventRecord(joined_[b], side));
    CUDA_CHECK(cudaStreamWaitEvent(stream, joined_[b], 0));
  }
}

}  // namespace cuda
}  // namespace moetron
