// CudaOps: the Ops backend on one NVIDIA GPU. Activations are bf16, weights are uploaded as
// bf16, every operator runs on the one stream this object owns (kernels/ + cuBLAS), and only
// to_host() and sync() make the host wait (and moe_experts on prefill-sized loads outside graph
// capture: it reads the experts' row counts). Temporaries come from one preallocated device arena,
// so a step's sequence of temp() calls gives the same addresses every step: a CUDA graph
// captured over one step (on stream()) replays over the next.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/backend/ops.hpp"

struct cublasContext;  // cublas_v2.h's handle type, kept out of this header

namespace moetron {
namespace cuda {
class ExpertGemmStreams;  // src/backend/cuda/expert_gemm_streams.hpp
}  // namespace cuda
namespace kernels {
struct DownSplit;  // moetron/kernels.hpp
}  // namespace kernels

// Which kernels run prefill-sized expert loads (where expert_call_by_gemms holds): per-expert
// cuBLASLt GEMMs on side streams (kCublas; not while capturing: it reads the row counts on the
// host), the portable WMMA tiles (kTiles), or one grouped wgmma + TMA launch a GEMM (kHopper:
// compute capability 9.0 and an sm_90a build; also while capturing, and also for decode-sized
// loads from kExpertHopperMinMeanRows rows an expert: expert_call_by_hopper_gemms). kHopperCublas,
// the default where kHopper runs (MOETRON_EXPERT_GEMM=auto), is kHopper except for the eager calls
// of large experts that the cuBLAS GEMMs run faster (expert_call_by_hopper_cublas).
enum class PrefillExpertPath { kCublas, kTiles, kHopper, kHopperCublas };

// True when the CUDA runtime sees at least one device.
bool cuda_device_available();

class CudaOps final : public Ops {
 public:
  // Binds the calling thread to `device` and reserves arena_bytes of device memory for temp().
  CudaOps(int device, size_t arena_bytes);
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  Device device() const override { return Device::Cuda; }
  DType activation_dtype() const override { return DType::BF16; }
  std::string name() const override;
  // expert_gemm, expert_streams, decode_experts, dense_gemv_max_rows, down_splits, pdl,
  // attention_min_keys, sampler_blocks_per_row (0: picked by the kernel).
  std::string kernel_settings() const override;

  Tensor upload_weight(const Tensor& host) override;
  // Generates on the device (kernels/random_fill.cu) unless MOETRON_DUMMY_ON_DEVICE=0, which
  // takes the host generator and an upload. Tests choose with set_generate_on_device.
  Tensor generate_weight(const std::vector<GeneratedRows>& parts, DType source_dtype,
                         std::vector<int64_t> shape) override;
  // Page-locked, from a pool kept until finish_weight_uploads (src/backend/cuda/cuda_staging.cpp).
  Tensor staging_tensor(DType dtype, std::vector<int64_t> shape) override;
  void finish_weight_uploads() override;
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  Tensor temp(DType dtype, std::vector<int64_t> shape) override;
  void reset_temps() override;
  size_t temp_mark() override { return arena_used_; }
  void temp_release(size_t mark) override;
  void temp_resume(size_t mark) override;
  void sync() override;
  int64_t free_memory_bytes() override;

  // Which kernels run decode-sized expert loads (expert_paths.hpp; tensor-core GEMVs by default):
  // for tests and A/B measurements; the environment's MOETRON_DECODE_EXPERTS (mma or cuda-cores)
  // sets it when the object is made.
  void set_decode_expert_kernel(DecodeExpertKernel kernel) { decode_expert_kernel_ = kernel; }
  void set_generate_on_device(bool on) { generate_on_device_ = on; }
  // The prefill expert path; the environment's MOETRON_EXPERT_GEMM (auto, cublas, tiles, wgmma or
  // wgmma+cublas) sets it when the object is made. The Hopper paths are refused on a device that
  // cannot run them.
  void set_prefill_expert_path(PrefillExpertPath path);
  PrefillExpertPath prefill_expert_path() const { return prefill_path_; }
  bool generate_on_device() const { return generate_on_device_; }
  DecodeExpertKernel decode_expert_kernel() const { return decode_expert_kernel_; }
  // The wide tiles' down-projection K splits: 0 picks them (kernels::wide_down_splits), 1 to
  // kernels::kMaxDownSplits forces that many. MOETRON_DOWN_SPLITS sets it when the object is
  // made (A/B measurements); tests force each.
  void set_down_splits(int splits) { down_splits_ = splits; }
  int down_splits() const { return down_splits_; }
  // Linear layers of at most this many rows run on the dense GEMV kernel (kernels::dense_gemv),
  // more on cuBLAS; 0: always cuBLAS. MOETRON_DENSE_GEMV_MAX_ROWS (0 to 16, default 16) sets
  // it when the object is made (A/B measurements); tests set both paths.
  void set_dense_gemv_max_rows(int64_t rows);
  int64_t dense_gemv_max_rows() const { return dense_gemv_max_rows_; }

  // Recording is stream capture into a CUDA graph (src/backend/cuda/cuda_recording.cpp).
  bool can_record() const override { return true; }
  void begin_recording() override;
  int end_recording() override;
  void replay(int recording) override;
  int64_t recording_nodes(int recording) const override;
  // Events around each section outside a recording (src/backend/cuda/cuda_section_timer.cpp);
  // sections enqueued while recording are not timed.
  void begin_timed_section() override;
  void end_timed_section() override;
  double timed_section_seconds() override;

  // ---- beyond Ops ----
  // Greedy sampling: ids[r] = argmax_c logits[r, c] (ties: lowest index); logits F32 or BF16
  // [R, V], ids I32 [R].
  void argmax(const Tensor& logits, Tensor& ids);
  // The stream every operator runs on (for graph capture and for NCCL).
  cudaStream_t stream() const { return stream_; }
  int device_index() const { return device_; }
  size_t arena_capacity() const { return arena_bytes_; }
  size_t arena_used() const { return arena_used_; }

 protected:
  // The Ops contract (ops_contract.cpp) has checked the arguments; these check only what the
  // kernels add (supported head sizes, expert counts, alignment).
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

  void do_attention_inputs(const Tensor& qkv, const QkNormSpec& norm, const Tensor& positions,
                           int64_t head_dim, double theta, KvCache& cache,
                           const BatchTensors& batch, Tensor& q) override;
  void do_kv_append(const Tensor& k, const Tensor& v, KvCache& cache,
                    const BatchTensors& batch) override;
  void do_attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch,
                    int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                    Tensor& out) override;

  void do_router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids,
                      Tensor& weights, const Tensor& valid_tokens) override;
  void do_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                      const ExpertWeights& experts, Tensor& out, int64_t expected_slots) override;
  void do_moe_experts_counted(const Tensor& x, const Tensor& ids, const Tensor& weights,
                              const ExpertWeights& experts, Tensor& out, int64_t expected_slots,
                              Tensor& served) override;
  void do_swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down,
                     Tensor& out) override;
  void do_add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w,
                            const Tensor& y) override;
  void do_gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) override;
  void do_scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows,
                           const Tensor& scale) override;
  void do_to_float(const Tensor& x, Tensor& out) override;
  void do_accumulate_expert_counts(const Tensor& ids, Tensor& counts) override;
  void do_pack_dispatch(const Tensor& ids, const Tensor& weights, int64_t first, int64_t last,
                        int64_t expert_set_size, int64_t expert_shards, int64_t capacity,
                        Tensor& rows, Tensor& experts, Tensor& scales) override;
  void do_route_to_replicas(const Tensor& ids, const Tensor& table, Tensor& out) override;
  void do_pack_from_peers(const Tensor& ids, const Tensor& tables, const Tensor& senders, int64_t tp_size,
                          int64_t expert_set_size, int64_t expert_shards, int64_t destination, int64_t capacity,
                          Tensor& rows, Tensor& experts) override;

  void do_accumulate_routing(const Tensor& records, int64_t tokens, Tensor& counts,
                             Tensor& pairs) override;
  void do_add_row_bias(Tensor& x, const Tensor& bias) override;
  void do_argmax_rows(const Tensor& logits, Tensor& ids) override { argmax(logits, ids); }
  // On the device (kernels::sample_rows): only the rows' settings go up, nothing comes back.
  void do_sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                      const std::vector<uint64_t>& steps, Tensor& ids) override;

 private:
  // do_moe_experts, and with served the experts' count (in the routing kernel where it runs).
  void run_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                       const ExpertWeights& experts, Tensor& out, int64_t expected_slots, Tensor* served);
  // The wide tiles' down-projection split (kernels::DownSplit) for a call of `slots` rows.
  kernels::DownSplit down_split(int64_t planned_tokens, int64_t k, int64_t local, int64_t hidden, int64_t inter,
                                int64_t slots);
  // The experts' gate/up and down GEMMs as one cuBLASLt call per expert on its rows (x_perm in
  // expert order, device_offsets [num_local + 1] its experts' first rows), several experts at
  // once (expert_gemms_): act [rows, inter], y_perm [rows, hidden]. Syncs the stream to read the
  // offsets; work enqueued on stream_ afterwards waits for the GEMMs.
  void expert_gemms_by_cublas(const void* x_perm, const ExpertWeights& experts,
                              const int32_t* device_offsets, int64_t hidden, int64_t inter,
                              Tensor& act, Tensor& y_perm);

  // A tensor of this dtype, shape and device without memory yet: alloc, temp and the staging
  // pool fill in data and owner.
  static Tensor unallocated(DType dtype, std::vector<int64_t> shape, Device device);
  // Holds `owner` (an upload's host memory) until the stream has run the copies enqueued so far.
  void keep_until_copied(const std::shared_ptr<void>& owner);

  int device_ = 0;
  int num_sms_ = 0;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cublasContext* cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  std::shared_ptr<cuda::ExpertGemmStreams> expert_gemms_;  // the kCublas path's streams, made when first chosen
  PrefillExpertPath prefill_path_ = PrefillExpertPath::kCublas;
  DecodeExpertKernel decode_expert_kernel_ = DecodeExpertKernel::kMma;
  int64_t dense_gemv_max_rows_ = 0;  // set_dense_gemv_max_rows
  bool generate_on_device_ = true;  // MOETRON_DUMMY_ON_DEVICE
  int down_splits_ = 0;             // MOETRON_DOWN_SPLITS (0: kernels::wide_down_splits)
  int wide_blocks_per_sm_ = 0;
  // The split down projection's arrival counts, one per (row tile, column block) of a launch:
  // zero between launches (the last block of each tile resets its own), so kept across steps
  // and graph replays rather than drawn from the arena.
  static constexpr int64_t kSplitCounters = 16384;
  int* split_counters_ = nullptr;
  void* arena_ = nullptr;
  size_t arena_bytes_ = 0;
  size_t arena_used_ = 0;
  // sample_rows' per-row settings: a buffer of its own, grown as needed, not a temp(): after a
  // graph replay the arena's next temporary may lie on the replayed step's logits.
  Tensor sampling_params_;
  Tensor sampling_workspace_;  // the split rows' partials and barriers, likewise
  struct Recordings;                        // instantiated graphs, destroyed with this object
  std::shared_ptr<Recordings> recordings_;  // shared_ptr: its deleter is bound where it is made
  struct SectionTimer;                      // event pairs of the timed sections
  std::shared_ptr<SectionTimer> section_timer_;
  struct Staging;  // page-locked staging blocks for weight uploads, shared with their tensors
  static std::shared_ptr<Staging> make_staging(int device);
  std::shared_ptr<Staging> staging_ = make_staging(device_);
};

// The CUDA backend on `device` with arena_bytes of temporaries per step.
std::unique_ptr<Ops> make_cuda_ops(int device, size_t arena_bytes);

// What CudaOps::kernel_settings reports for an object made now on the current device (the
// MOETRON_* environment), without making one: for checking a profile before the ops exist.
std::string cuda_kernel_settings_by_env();

}  // namespace moetron
