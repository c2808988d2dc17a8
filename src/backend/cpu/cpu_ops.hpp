// CpuOps: the float32 reference implementation of Ops (see include/moetron/backend/ops.hpp for
// the contract of every method). Private to src/backend/cpu; others use make_cpu_ops().
// The methods are spread over memory, dense, attention and MoE source files.
#pragma once
#include <memory>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace cpu {

// Typed access to a CPU tensor; a wrong dtype or device is a bug in the caller.
inline float* f32(const Tensor& t) {
  MOETRON_ASSERT(t.dtype == DType::F32 && t.device == Device::Cpu);
  return t.as<float>();
}
inline int32_t* i32(const Tensor& t) {
  MOETRON_ASSERT(t.dtype == DType::I32 && t.device == Device::Cpu);
  return t.as<int32_t>();
}

}  // namespace cpu

class CpuOps final : public Ops {
 public:
  Device device() const override { return Device::Cpu; }
  DType activation_dtype() const override { return DType::F32; }
  std::string name() const override { return "cpu"; }

  Tensor upload_weight(const Tensor& host) override;
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  Tensor temp(DType dtype, std::vector<int64_t> shape) override;
  void reset_temps() override;
  size_t temp_mark() override { return temp_blocks_.size(); }
  size_t peak_temp_bytes() const { return temp_peak_; }
  void temp_release(size_t mark) override;
  void sync() override {}
  // The CPU runs every call before it returns, so a section's time is the host's clock.
  void begin_timed_section() override;
  void end_timed_section() override;
  double timed_section_seconds() override { return timed_seconds_; }
 protected:
  // The Ops contract (ops_contract.cpp) has checked the arguments.
  void do_copy_from_host(Tensor& dst, const void* src) override;
  void do_to_host(const Tensor& src, void* dst) override;
  void do_copy(const Tensor& src, Tensor& dst) override;
  void do_copy_columns(const Tensor& src, int64_t width, Tensor& dst, int64_t col) override;
  void do_take_columns(const Tensor& src, int64_t col, int64_t width, Tensor& dst) override;
  void do_fill_zero(Tensor& t) override;

  void do_embed(const Tensor& ids, const Tensor& table, Tensor& out) override;
  void do_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override;
  void do_add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                      Tensor& out) override;
  void do_row_sumsq(const Tensor& x, Tensor& sumsq) override;
  void do_rmsnorm_with_sumsq(const Tensor& x, const Tensor& sumsq, int64_t total_cols,
                             const Tensor& w, float eps, Tensor& out) override;
  void do_linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override;
  void do_add_inplace(Tensor& acc, const Tensor& x) override;
  void do_clamp_inplace(Tensor& x, float limit) override;
  void do_rope(Tensor& q, Tensor& k, const Tensor& positions, int64_t head_dim,
               double theta) override;

  void do_kv_append(const Tensor& k, const Tensor& v, KvCache& cache,
                    const BatchTensors& batch) override;
  void do_attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch,
                    int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                    Tensor& out) override;

  void do_router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids,
                      Tensor& weights, const Tensor& valid_tokens) override;
  void do_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                      const ExpertWeights& experts, Tensor& out, int64_t expected_slots) override;
  void do_swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down,
                     Tensor& out) override;
  void do_add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w,
                            const Tensor& y) override;
  void do_gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override;
  void do_scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows,
                           const Tensor& scale) override;
  void do_to_float(const Tensor& x, Tensor& out) override;
  void do_add_row_bias(Tensor& x, const Tensor& bias) override;

 private:
  // Blocks handed out by temp(); the tensors are views, so a use after reset_temps() is a
  // use-after-free that sanitizers catch, as it would be a bug on the CUDA backend too.
  std::vector<std::shared_ptr<void>> temp_blocks_;
  // The arena bytes (cpu_peak_temp_bytes' rounding) of the temporaries alive before each block
  // of temp_blocks_, the bytes alive now and the most alive at once.
  std::vector<size_t> temp_used_before_;
  size_t temp_used_ = 0, temp_peak_ = 0;
  double section_start_ = -1;  // seconds on the steady clock; -1: no section open
  double timed_seconds_ = 0;
};

}  // namespace moetron
