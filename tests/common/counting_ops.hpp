// CountingOps: an Ops that records the name of every operator called on it, in order, and
// hands the call to the backend it wraps. Tests compare two runs' operator sequences with it
// (an emulated rank takes the same kernels as the real one). Memory management (alloc, temp,
// sync, recording) passes through unrecorded: it is not an operator.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"

namespace moetron {

class CountingOps : public Ops {
 public:
  explicit CountingOps(std::unique_ptr<Ops> inner) : inner_(std::move(inner)) {}

  const std::vector<std::string>& calls() const { return calls_; }

  Device device() const override { return inner_->device(); }
  DType activation_dtype() const override { return inner_->activation_dtype(); }
  std::string name() const override { return inner_->name(); }
  Tensor upload_weight(const Tensor& host) override { return inner_->upload_weight(host); }
  Tensor staging_tensor(DType dtype, std::vector<int64_t> shape) override {
    return inner_->staging_tensor(dtype, std::move(shape));
  }
  void finish_weight_uploads() override { inner_->finish_weight_uploads(); }
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override { return inner_->alloc(dtype, std::move(shape)); }
  Tensor temp(DType dtype, std::vector<int64_t> shape) override { return inner_->temp(dtype, std::move(shape)); }
  void reset_temps() override { inner_->reset_temps(); }
  size_t temp_mark() override { return inner_->temp_mark(); }
  void temp_release(size_t mark) override { inner_->temp_release(mark); }
  void temp_resume(size_t mark) override { inner_->temp_resume(mark); }
  void sync() override { inner_->sync(); }
  int64_t free_memory_bytes() override { return inner_->free_memory_bytes(); }
  bool can_record() const override { return inner_->can_record(); }
  void begin_recording() override { inner_->begin_recording(); }
  int end_recording() override { return inner_->end_recording(); }
  void replay(int recording) override { inner_->replay(recording); }
  void begin_timed_section() override { inner_->begin_timed_section(); }
  void end_timed_section() override { inner_->end_timed_section(); }
  double timed_section_seconds() override { return inner_->timed_section_seconds(); }

 protected:
  void do_copy_from_host(Tensor& dst, const void* src) override { note("copy_from_host"), inner_->copy_from_host(dst, src); }
  void do_to_host(const Tensor& src, void* dst) override { note("to_host"), inner_->to_host(src, dst); }
  void do_copy(const Tensor& src, Tensor& dst) override { note("copy"), inner_->copy(src, dst); }
  void do_copy_columns(const Tensor& src, int64_t width, Tensor& dst, int64_t col) override {
    note("copy_columns"), inner_->copy_columns(src, width, dst, col);
  }
  void do_take_columns(const Tensor& src, int64_t col, int64_t width, Tensor& dst) override {
    note("take_columns"), inner_->take_columns(src, col, width, dst);
  }
  void do_attention_inputs(const Tensor& qkv, const QkNormSpec& norm, const Tensor& positions, int64_t head_dim,
                           double theta, KvCache& cache, const BatchTensors& batch, Tensor& q) override {
    note("attention_inputs"), inner_->attention_inputs(qkv, norm, positions, head_dim, theta, cache, batch, q);
  }
  void do_fill_zero(Tensor& t) override { note("fill_zero"), inner_->fill_zero(t); }
  void do_embed(const Tensor& ids, const Tensor& table, Tensor& out) override { note("embed"), inner_->embed(ids, table, out); }
  void do_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    note("rmsnorm"), inner_->rmsnorm(x, w, eps, out);
  }
  void do_add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps, Tensor& out) override {
    note("add_rmsnorm"), inner_->add_rmsnorm(residual, delta, w, eps, out);
  }
  void do_row_sumsq(const Tensor& x, Tensor& sumsq) override { note("row_sumsq"), inner_->row_sumsq(x, sumsq); }
  void do_rmsnorm_with_sumsq(const Tensor& x, const Tensor& sumsq, int64_t total_cols, const Tensor& w, float eps,
                             Tensor& out) override {
    note("rmsnorm_with_sumsq"), inner_->rmsnorm_with_sumsq(x, sumsq, total_cols, w, eps, out);
  }
  void do_linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
    note("linear"), inner_->linear(x, w, bias, out);
  }
  void do_add_inplace(Tensor& acc, const Tensor& x) override { note("add_inplace"), inner_->add_inplace(acc, x); }
  void do_clamp_inplace(Tensor& x, float limit) override { note("clamp_inplace"), inner_->clamp_inplace(x, limit); }
  void do_rope(Tensor& q, Tensor& k, const Tensor& positions, int64_t head_dim, double theta) override {
    note("rope"), inner_->rope(q, k, positions, head_dim, theta);
  }
  void do_kv_append(const Tensor& k, const Tensor& v, KvCache& cache, const BatchTensors& batch) override {
    note("kv_append"), inner_->kv_append(k, v, cache, batch);
  }
  void do_attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch, int64_t num_q_heads,
                    int64_t num_kv_heads, int64_t head_dim, float scale, Tensor& out) override {
    note("attention"), inner_->attention(q, cache, batch, num_q_heads, num_kv_heads, head_dim, scale, out);
  }
  void do_router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids, Tensor& weights,
                      const Tensor& valid_tokens) override {
    note("router_topk"), inner_->router_topk(logits, k, renormalize, ids, weights, valid_tokens);
  }
  void do_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertWeights& experts,
                      Tensor& out, int64_t expected_slots) override {
    note("moe_experts"), inner_->moe_experts(x, ids, weights, experts, out, expected_slots);
  }
  void do_swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down, Tensor& out) override {
    note("swiglu_mlp"), inner_->swiglu_mlp(x, gate_up, down, out);
  }
  void do_add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w, const Tensor& y) override {
    note("add_sigmoid_gated"), inner_->add_sigmoid_gated(acc, x, gate_w, y);
  }
  void do_gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override {
    note("gather_rows"), inner_->gather_rows(x, rows, out);
  }
  void do_scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows, const Tensor& scale) override {
    note("scatter_add_rows"), inner_->scatter_add_rows(acc, x, rows, scale);
  }
  void do_to_float(const Tensor& x, Tensor& out) override { note("to_float"), inner_->to_float(x, out); }
  void do_pack_dispatch(const Tensor& ids, const Tensor& weights, int64_t first, int64_t last, int64_t expert_set_size,
                        int64_t expert_shards, int64_t capacity, Tensor& rows, Tensor& experts,
                        Tensor& scales) override {
    note("pack_dispatch"),
        inner_->pack_dispatch(ids, weights, first, last, expert_set_size, expert_shards, capacity, rows, experts, scales);
  }
  void do_route_to_replicas(const Tensor& ids, const Tensor& table, Tensor& out) override {
    note("route_to_replicas"), inner_->route_to_replicas(ids, table, out);
  }
  void do_pack_from_peers(const Tensor& ids, const Tensor& tables, const Tensor& senders, int64_t tp_size,
                          int64_t expert_set_size, int64_t expert_shards, int64_t destination, int64_t capacity,
                          Tensor& rows, Tensor& experts) override {
    note("pack_from_peers"), inner_->pack_from_peers(ids, tables, senders, tp_size, expert_set_size, expert_shards,
                                                     destination, capacity, rows, experts);
  }
  void do_argmax_rows(const Tensor& logits, Tensor& ids) override { note("argmax_rows"), inner_->argmax_rows(logits, ids); }
  void do_sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                      const std::vector<uint64_t>& steps, Tensor& ids) override {
    note("sample_rows"), inner_->sample_rows(logits, params, steps, ids);
  }
  void do_accumulate_expert_counts(const Tensor& ids, Tensor& counts) override {
    note("accumulate_expert_counts"), inner_->accumulate_expert_counts(ids, counts);
  }
  void do_accumulate_routing(const Tensor& records, int64_t tokens, Tensor& counts, Tensor& pairs) override {
    note("accumulate_routing"), inner_->accumulate_routing(records, tokens, counts, pairs);
  }
  void do_add_row_bias(Tensor& x, const Tensor& bias) override { note("add_row_bias"), inner_->add_row_bias(x, bias); }

 private:
  void note(const char* op) { calls_.emplace_back(op); }

  std::unique_ptr<Ops> inner_;
  std::vector<std::string> calls_;
};

}  // namespace moetron
