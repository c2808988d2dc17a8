// Bf16StorageOps: the CPU reference with bf16 storage emulated — every activation an operator
// writes is rounded to bf16 (float32 math inside each operator, as on the GPU). It tells how
// far from Hugging Face's float32 outputs bf16 storage alone moves a model, which is what a
// bf16 GPU backend may be held to.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "moetron/backend/cpu_ops.hpp"

namespace moetron::test {

class Bf16StorageOps : public Ops {
 public:
  Bf16StorageOps() : cpu_(make_cpu_ops()) {}
  Device device() const override { return cpu_->device(); }
  DType activation_dtype() const override { return cpu_->activation_dtype(); }
  std::string name() const override { return "cpu (bf16 storage emulated)"; }

  Tensor upload_weight(const Tensor& host) override { return cpu_->upload_weight(host); }
  Tensor alloc(DType d, std::vector<int64_t> s) override { return cpu_->alloc(d, std::move(s)); }
  Tensor temp(DType d, std::vector<int64_t> s) override { return cpu_->temp(d, std::move(s)); }
  void reset_temps() override {
    cpu_->reset_temps();
    router_gaps_.clear();
  }
  size_t temp_mark() override { return cpu_->temp_mark(); }
  void temp_release(size_t m) override { cpu_->temp_release(m); }
  void sync() override {}
  // Per token of the current step (since reset_temps): the smallest gap, over every layer,
  // between the router logits of the k-th and (k+1)-th expert. A gap near bf16's resolution is
  // a routing near-tie: a rounding difference anywhere upstream may pick the other expert.
  const std::vector<float>& router_gaps() const { return router_gaps_; }

 protected:
  void do_copy_from_host(Tensor& d, const void* s) override { cpu_->copy_from_host(d, s); }
  void do_to_host(const Tensor& s, void* d) override { cpu_->to_host(s, d); }
  void do_copy(const Tensor& s, Tensor& d) override { cpu_->copy(s, d); }
  void do_copy_columns(const Tensor& s, int64_t width, Tensor& d, int64_t col) override {
    cpu_->copy_columns(s, width, d, col);
  }
  void do_take_columns(const Tensor& s, int64_t col, int64_t width, Tensor& d) override {
    cpu_->take_columns(s, col, width, d);
  }
  void do_fill_zero(Tensor& t) override { cpu_->fill_zero(t); }

  void do_embed(const Tensor& ids, const Tensor& table, Tensor& out) override {
    cpu_->embed(ids, table, out);
    round(out);
  }
  void do_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    cpu_->rmsnorm(x, w, eps, out);
    round(out);
  }
  void do_add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps, Tensor& out) override {
    cpu_->add_rmsnorm(residual, delta, w, eps, out);
    round(residual);
    round(out);
  }
  void do_row_sumsq(const Tensor& x, Tensor& s) override { cpu_->row_sumsq(x, s); }
  void do_rmsnorm_with_sumsq(const Tensor& x, const Tensor& s, int64_t n, const Tensor& w, float eps,
                             Tensor& out) override {
    cpu_->rmsnorm_with_sumsq(x, s, n, w, eps, out);
    round(out);
  }
  void do_linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& out) override {
    cpu_->linear(x, w, b, out);
    round(out);  // (the GPU keeps router logits in float32: rounding them here is pessimistic)
  }
  void do_add_inplace(Tensor& acc, const Tensor& x) override {
    cpu_->add_inplace(acc, x);
    round(acc);
  }
  void do_clamp_inplace(Tensor& x, float l) override { cpu_->clamp_inplace(x, l); }
  void do_rope(Tensor& q, Tensor& k, const Tensor& p, int64_t hd, double theta) override {
    cpu_->rope(q, k, p, hd, theta);
    round(q);
    round(k);
  }
  void do_kv_append(const Tensor& k, const Tensor& v, KvCache& c, const BatchTensors& b) override {
    cpu_->kv_append(k, v, c, b);
  }
  void do_attention(const Tensor& q, const KvCache& c, const BatchTensors& b, int64_t nq, int64_t nk,
                    int64_t hd, float scale, Tensor& out) override {
    cpu_->attention(q, c, b, nq, nk, hd, scale, out);
    round(out);
  }
  void do_router_topk(const Tensor& l, int64_t k, bool r, Tensor& ids, Tensor& w, const Tensor& valid) override {
    cpu_->router_topk(l, k, r, ids, w, valid);
    record_router_gaps(l, k);
  }
  void do_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& w, const ExpertWeights& e,
                      Tensor& out, int64_t expected_slots) override {
    cpu_->moe_experts(x, ids, w, e, out, expected_slots);
    round(out);
  }
  void do_swiglu_mlp(const Tensor& x, const Tensor& gu, const Tensor& d, Tensor& out) override {
    cpu_->swiglu_mlp(x, gu, d, out);
    round(out);
  }
  void do_add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& g, const Tensor& y) override {
    cpu_->add_sigmoid_gated(acc, x, g, y);
    round(acc);
  }
  void do_gather_rows(const Tensor& x, const Tensor& r, Tensor& out) override { cpu_->gather_rows(x, r, out); }
  void do_scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& r, const Tensor& s) override {
    cpu_->scatter_add_rows(acc, x, r, s);
    round(acc);
  }
  void do_to_float(const Tensor& x, Tensor& out) override { cpu_->to_float(x, out); }
  void do_add_row_bias(Tensor& x, const Tensor& b) override { cpu_->add_row_bias(x, b); }  // F32: no rounding

 private:
  void record_router_gaps(const Tensor& logits, int64_t k) {
    const int64_t T = logits.rows(), E = logits.cols();
    if (k >= E) return;  // every expert chosen: no decision to flip
    router_gaps_.resize(static_cast<size_t>(T), INFINITY);
    const float* p = logits.as<float>();
    for (int64_t t = 0; t < T; ++t) {
      std::vector<float> row(p + t * E, p + (t + 1) * E);
      std::nth_element(row.begin(), row.begin() + k, row.end(), std::greater<float>());
      const float kth_plus_one = row[static_cast<size_t>(k)];
      const float kth = *std::min_element(row.begin(), row.begin() + k);
      router_gaps_[static_cast<size_t>(t)] = std::min(router_gaps_[static_cast<size_t>(t)], kth - kth_plus_one);
    }
  }
  static void round(Tensor& t) {
    if (t.dtype != DType::F32) return;
    float* p = t.as<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = bf16_to_float(float_to_bf16(p[i]));
  }
  std::unique_ptr<Ops> cpu_;
  std::vector<float> router_gaps_;
};

}  // namespace moetron::test
