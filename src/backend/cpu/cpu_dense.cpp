// CpuOps dense math: embedding, norms, linear layers, elementwise ops, rotary embedding, dense
// SwiGLU MLP and row gather/scatter.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_math.hpp"
#include "cpu_ops.hpp"

namespace moetron {

using cpu::f32;
using cpu::i32;

namespace {

// Sum of squares of one row, accumulated in double so long rows lose nothing.
double sum_of_squares(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

// out = (x * inv_rms) * w, in Hugging Face's order of float32 roundings.
void scale_row(const float* x, float inv_rms, const float* w, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv_rms);
}

float inverse_rms(double sumsq, int64_t cols, float eps) {
  float mean = static_cast<float>(sumsq / static_cast<double>(cols));
  return 1.0f / std::sqrt(mean + eps);
}

// Views x as [rows, w.numel()] (the norm's width), as rmsnorm's contract allows.
int64_t norm_rows(const Tensor& x, const Tensor& w) { return x.numel() / w.numel(); }

}  // namespace

// The Ops contract (ops_contract.cpp) has checked every argument's dtype and shape; what is
// asserted here is what only the data shows (ids and rows in range).

void CpuOps::do_embed(const Tensor& ids, const Tensor& table, Tensor& out) {
  const int64_t vocab = table.dim(0), h = table.cols(), tokens = ids.numel();
  const int32_t* id = i32(ids);
  const float* src = f32(table);
  float* dst = f32(out);
  for (int64_t t = 0; t < tokens; ++t) {
    MOETRON_ASSERT(id[t] >= 0 && id[t] < vocab);
    std::memcpy(dst + t * h, src + static_cast<int64_t>(id[t]) * h, h * sizeof(float));
  }
}

void CpuOps::do_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) {
  const int64_t rows = norm_rows(x, w), cols = w.numel();
  const float* in = f32(x);
  float* o = f32(out);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = in + r * cols;
    scale_row(xr, inverse_rms(sum_of_squares(xr, cols), cols, eps), f32(w), cols, o + r * cols);
  }
}

void CpuOps::do_add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                            Tensor& out) {
  const int64_t rows = norm_rows(residual, w), cols = w.numel();
  float* res = f32(residual);
  const float* d = f32(delta);
  float* o = f32(out);
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = res + r * cols;
    for (int64_t c = 0; c < cols; ++c) xr[c] += d[r * cols + c];
    scale_row(xr, inverse_rms(sum_of_squares(xr, cols), cols, eps), f32(w), cols, o + r * cols);
  }
}

void CpuOps::do_row_sumsq(const Tensor& x, Tensor& sumsq) {
  const int64_t rows = x.rows(), cols = x.cols();
  const float* in = f32(x);
  float* s = f32(sumsq);
  for (int64_t r = 0; r < rows; ++r) s[r] = static_cast<float>(sum_of_squares(in + r * cols, cols));
}

void CpuOps::do_rmsnorm_with_sumsq(const Tensor& x, const Tensor& sumsq, int64_t total_cols,
                                   const Tensor& w, float eps, Tensor& out) {
  const int64_t rows = x.rows(), cols = x.cols();
  const float* in = f32(x);
  const float* s = f32(sumsq);
  float* o = f32(out);
  for (int64_t r = 0; r < rows; ++r)
    scale_row(in + r * cols, inverse_rms(s[r], total_cols, eps), f32(w), cols, o + r * cols);
}

void CpuOps::do_linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) {
  const int64_t rows = x.rows(), k = x.cols(), n = w.dim(0);
  const float* b = bias && bias->defined() ? f32(*bias) : nullptr;
  cpu::matmul_nt(f32(x), rows, k, f32(w), n, b, f32(out));
}

void CpuOps::do_add_inplace(Tensor& acc, const Tensor& x) {
  float* a = f32(acc);
  const float* in = f32(x);
  for (int64_t i = 0, n = acc.numel(); i < n; ++i) a[i] += in[i];
}

void CpuOps::do_clamp_inplace(Tensor& x, float limit) {
  float* v = f32(x);
  for (int64_t i = 0, n = x.numel(); i < n; ++i) v[i] = std::min(limit, std::max(-limit, v[i]));
}

void CpuOps::do_rope(Tensor& q, Tensor& k, const Tensor& positions, int64_t head_dim, double theta) {
  const int64_t tokens = positions.numel(), half = head_dim / 2;
  // Hugging Face's default rope in float32: inv_freq = 1 / theta^(2i / d) (torch.pow on a
  // float32 tensor), angle = position * inv_freq rounded to float32, then cos/sin.
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(theta),
                                  static_cast<float>(2 * i) / static_cast<float>(head_dim));
  const int32_t* pos = i32(positions);
  std::vector<float> cos_t(half), sin_t(half);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      float angle = static_cast<float>(pos[t]) * inv_freq[i];
      cos_t[i] = std::cos(angle);
      sin_t[i] = std::sin(angle);
    }
    for (Tensor* x : {&q, &k}) {
      float* row = f32(*x) + t * x->cols();
      for (int64_t h = 0; h < x->cols() / head_dim; ++h) {
        float* lo = row + h * head_dim;  // rotate-half: pairs (i, i + d/2)
        float* hi = lo + half;
        for (int64_t i = 0; i < half; ++i) {
          float a = lo[i], b = hi[i];
          lo[i] = a * cos_t[i] - b * sin_t[i];
          hi[i] = b * cos_t[i] + a * sin_t[i];
        }
      }
    }
  }
}

void CpuOps::do_swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down, Tensor& out) {
  const int64_t rows = x.rows(), h = x.cols(), inter = down.cols();
  cpu::swiglu_mlp_rows(f32(x), rows, h, f32(gate_up), f32(down), inter, f32(out));
}

void CpuOps::do_add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w,
                                  const Tensor& y) {
  const int64_t rows = x.rows(), h = x.cols();
  float* a = f32(acc);
  const float* in = f32(x);
  const float* yv = f32(y);
  for (int64_t r = 0; r < rows; ++r) {
    float gate = cpu::sigmoid(cpu::dot(in + r * h, f32(gate_w), h));
    for (int64_t c = 0; c < h; ++c) a[r * h + c] += gate * yv[r * h + c];
  }
}

void CpuOps::do_gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) {
  const int64_t n = rows.numel(), cols = x.cols();
  const int32_t* idx = i32(rows);
  const float* src = f32(x);
  float* dst = f32(out);
  for (int64_t i = 0; i < n; ++i) {
    MOETRON_ASSERT(idx[i] >= -1 && idx[i] < x.rows());
    if (idx[i] < 0) {
      std::fill_n(dst + i * cols, cols, 0.0f);
    } else {
      std::memcpy(dst + i * cols, src + static_cast<int64_t>(idx[i]) * cols, cols * sizeof(float));
    }
  }
}

void CpuOps::do_scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows,
                                 const Tensor& scale) {
  const int64_t n = rows.numel(), cols = acc.cols();
  const int32_t* idx = i32(rows);
  const float* s = f32(scale);
  const float* src = f32(x);
  float* dst = f32(acc);
  for (int64_t i = 0; i < n; ++i) {
    MOETRON_ASSERT(idx[i] >= -1 && idx[i] < acc.rows());
    if (idx[i] < 0) continue;
    float* d = dst + static_cast<int64_t>(idx[i]) * cols;
    for (int64_t c = 0; c < cols; ++c) d[c] += s[i] * src[i * cols + c];
  }
}

void CpuOps::do_to_float(const Tensor& x, Tensor& out) {
  if (x.data == out.data) {  // in place: only float32 can already be float32
    MOETRON_ASSERT(x.dtype == DType::F32);
    return;
  }
  if (x.numel()) convert_to_float(x.data, x.dtype, f32(out), x.numel());
}

}  // namespace moetron
