// CpuOps mixture of experts: router softmax + top-k, and the routed experts computed expert by
// expert over the tokens routed to each (gather, SwiGLU MLP, weighted scatter-add).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu_math.hpp"
#include "cpu_ops.hpp"

namespace moetron {

using cpu::f32;
using cpu::i32;

void CpuOps::do_add_row_bias(Tensor& x, const Tensor& bias) {
  const int64_t rows = x.rows(), cols = x.cols();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) f32(x)[r * cols + c] += f32(bias)[c];
}

void CpuOps::do_router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids,
                            Tensor& weights, const Tensor& valid_tokens) {
  const int64_t tokens = logits.rows(), experts = logits.cols();
  const int64_t valid = valid_tokens.defined() ? std::clamp<int64_t>(i32(valid_tokens)[0], 0, tokens) : tokens;
  std::fill(i32(ids) + valid * k, i32(ids) + tokens * k, -1);  // padding rows: no expert's
  std::fill(f32(weights) + valid * k, f32(weights) + tokens * k, 0.0f);
  std::vector<float> probs(experts);
  std::vector<int32_t> order(experts);
  for (int64_t t = 0; t < valid; ++t) {
    const float* z = f32(logits) + t * experts;
    const float max_z = *std::max_element(z, z + experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < experts; ++e) sum += probs[e] = std::exp(z[e] - max_z);
    for (int64_t e = 0; e < experts; ++e) probs[e] /= sum;

    // Top-k by probability; equal probabilities keep the lower expert index first.
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
    });
    float kept = 0.0f;
    for (int64_t j = 0; j < k; ++j) kept += probs[order[j]];
    int32_t* id = i32(ids) + t * k;
    float* w = f32(weights) + t * k;
    for (int64_t j = 0; j < k; ++j) {
      id[j] = order[j];
      w[j] = renormalize ? probs[order[j]] / kept : probs[order[j]];
    }
  }
}

void CpuOps::do_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                            const ExpertWeights& experts, Tensor& out, int64_t /*expected_slots: one loop*/) {
  const int64_t tokens = x.rows(), h = x.cols(), k = ids.cols();
  const int64_t local = experts.num_local, inter = experts.down.cols();
  fill_zero(out);
  const int32_t* id = i32(ids);
  const float* w = f32(weights);
  const float* xv = f32(x);
  float* o = f32(out);

  // Expert by expert, in index order, so each token sums its experts' outputs in the order
  // Hugging Face's loop over experts does.
  std::vector<int64_t> routed_tokens;
  std::vector<float> routed_weights, expert_in, expert_out;
  for (int64_t e = 0; e < local; ++e) {
    const int64_t global = experts.first_expert + e;
    routed_tokens.clear();
    routed_weights.clear();
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t j = 0; j < k; ++j)
        if (id[t * k + j] == global) {
          routed_tokens.push_back(t);
          routed_weights.push_back(w[t * k + j]);
        }
    const int64_t n = static_cast<int64_t>(routed_tokens.size());
    if (n == 0) continue;
    expert_in.resize(n * h);
    expert_out.resize(n * h);
    for (int64_t i = 0; i < n; ++i)
      std::copy(xv + routed_tokens[i] * h, xv + (routed_tokens[i] + 1) * h, &expert_in[i * h]);
    cpu::swiglu_mlp_rows(expert_in.data(), n, h, f32(experts.gate_up) + e * 2 * inter * h,
                         f32(experts.down) + e * h * inter, inter, expert_out.data());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < h; ++c) o[routed_tokens[i] * h + c] += expert_out[i * h + c] * routed_weights[i];
  }
}

}  // namespace moetron
