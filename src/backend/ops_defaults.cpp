// Default implementations of Ops members that every backend may share.
#include <algorithm>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/core/error.hpp"
#include "moetron/engine/sampling.hpp"

namespace moetron {

void Ops::accumulate_expert_counts(const Tensor& ids, Tensor& counts) {
  MOETRON_ASSERT(ids.dtype == DType::I32 && counts.dtype == DType::I64);
  if (ids.numel() == 0) return;
  std::vector<int32_t> host_ids(static_cast<size_t>(ids.numel()));
  std::vector<int64_t> host_counts(static_cast<size_t>(counts.numel()));
  to_host(ids, host_ids.data());
  to_host(counts, host_counts.data());
  for (int32_t e : host_ids) {
    MOETRON_ASSERT(e >= 0 && e < static_cast<int32_t>(host_counts.size()));
    ++host_counts[static_cast<size_t>(e)];
  }
  copy_from_host(counts, host_counts.data());
}

void Ops::argmax_rows(const Tensor& logits, Tensor& ids) {
  MOETRON_ASSERT(logits.dtype == DType::F32 && ids.dtype == DType::I32 && ids.numel() == logits.rows());
  if (logits.numel() == 0) return;
  const int64_t rows = logits.rows(), cols = logits.cols();
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  std::vector<int32_t> best(static_cast<size_t>(rows));
  to_host(logits, host.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = &host[static_cast<size_t>(r * cols)];
    best[static_cast<size_t>(r)] = static_cast<int32_t>(std::max_element(row, row + cols) - row);
  }
  copy_from_host(ids, best.data());
}

void Ops::sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                      const std::vector<uint64_t>& steps, Tensor& ids) {
  const int64_t rows = logits.rows(), cols = logits.cols();
  MOETRON_ASSERT(logits.dtype == DType::F32 && ids.dtype == DType::I32 && ids.numel() == rows &&
                 static_cast<int64_t>(params.size()) == rows &&
                 static_cast<int64_t>(steps.size()) == rows);
  if (logits.numel() == 0) return;
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  std::vector<int32_t> tokens(static_cast<size_t>(rows));
  to_host(logits, host.data());
  for (size_t r = 0; r < tokens.size(); ++r)
    tokens[r] = sample_token(&host[r * static_cast<size_t>(cols)], cols, params[r], steps[r]);
  copy_from_host(ids, tokens.data());
}

}  // namespace moetron
