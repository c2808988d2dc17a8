// CudaOps: argument checks, temporaries and launches; the math lives in kernels/ and cuBLAS.
#include "moetron/backend/cuda_ops.hpp"

#include <cublas_v2.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "cublas_gemm.hpp"
#include "expert_gemm_streams.hpp"
#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
#include "moetron/sampling/radix_sampling.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace {

using kernels::bf16;

constexpr size_t kCublasWorkspaceBytes = 32u << 20;  // fixed, so graph replays need no allocation

// The checks of what CudaOps offers beyond Ops (argmax) name the operator, the argument and
// what it got; the Ops contract's are in ops_contract.cpp.
void expect(const Tensor& t, DType dtype, const char* op, const char* arg) {
  MOETRON_CHECK(t.defined() && t.device == Device::Cuda && t.dtype == dtype,
                op << ": " << arg << " must be a " << dtype_name(dtype)
                   << " tensor on cuda, got " << (t.defined() ? t.describe() : "an empty tensor"));
}

void expect_numel(const Tensor& t, int64_t numel, const char* op, const char* arg) {
  MOETRON_CHECK(t.numel() == numel, op << ": " << arg << " " << t.describe() << " must have "
                                       << numel << " elements");
}

bf16* bf(const Tensor& t) { return static_cast<bf16*>(t.data); }
int32_t* i32(const Tensor& t) { return static_cast<int32_t*>(t.data); }
float* f32(const Tensor& t) { return static_cast<float*>(t.data); }

// Prefill-sized expert loads (the large row tiles: hundreds of rows per expert on average) take
// one of the paths of PrefillExpertPath, by MOETRON_EXPERT_GEMM: `cublas` runs one cuBLASLt GEMM
// per expert on its exact rows, the experts spread over a few streams (ExpertGemmStreams,
// expert_paths.hpp): the portable WMMA tiles reach about a quarter of the bf16 GEMM rate there
// (ncu, perf/NOTES.md); it needs the experts' row counts on the host (one stream sync per MoE
// layer), so only outside graph capture. `tiles` keeps the WMMA tiles. `wgmma` runs
// kernels/grouped_gemm_sm90.cu (Hopper only: one launch for all experts, no sync), `wgmma+cublas`
// the same but the large experts' eager calls on cuBLAS (expert_call_by_hopper_cublas). `auto`
// (the default) is `wgmma+cublas` where the Hopper kernel runs, else `cublas`: on an H200 it ran
// the expert calls of OLMoE, Qwen1.5 and Qwen3 at 512-4,096 tokens 1.0-2.3x as fast as cuBLAS,
// and Mixtral's at 160-256 decode sequences 1.2-1.5x as fast as the tiles (expert_gemm_bench,
// twenty-third session, perf/NOTES.md). MOETRON_EXPERT_STREAMS=N (1-16, default 8) caps the cuBLAS streams.
// Read when a CudaOps is made (not once per process), so that a benchmark can compare paths.
PrefillExpertPath prefill_expert_path_by_env() {
  const char* env = std::getenv("MOETRON_EXPERT_GEMM");
  const std::string v = env == nullptr ? "auto" : env;
  if (v == "auto")
    return kernels::grouped_gemm_sm90_available() ? PrefillExpertPath::kHopperCublas : PrefillExpertPath::kCublas;
  if (v == "cublas") return PrefillExpertPath::kCublas;
  if (v == "tiles") return PrefillExpertPath::kTiles;
  if (v == "wgmma+cublas") return PrefillExpertPath::kHopperCublas;
  MOETRON_CHECK(v == "wgmma",
                "MOETRON_EXPERT_GEMM='" << v << "': expected auto, cublas, tiles, wgmma or wgmma+cublas");
  return PrefillExpertPath::kHopper;
}

// MOETRON_DECODE_EXPERTS: which kernels run decode-sized expert loads (expert_paths.hpp): `mma`
// (the tensor-core GEMVs, the default since their GPU tests and sanitizers passed, tenth
// session) or `cuda-cores` (CUDA-core GEMVs and 16-row WMMA tiles, kept for A/B measurements:
// perf/NOTES.md, ninth session).
DecodeExpertKernel decode_expert_kernel_by_env() {
  const char* env = std::getenv("MOETRON_DECODE_EXPERTS");
  const std::string v = env == nullptr ? "mma" : env;
  if (v == "mma") return DecodeExpertKernel::kMma;
  MOETRON_CHECK(v == "cuda-cores", "MOETRON_DECODE_EXPERTS='" << v << "': expected mma or cuda-cores");
  return DecodeExpertKernel::kCudaCores;
}

// Dummy weights are generated on the device (generate_weight) unless MOETRON_DUMMY_ON_DEVICE=0
// (the host generator and an upload: startup of the OLMoE-1B-7B shape 7.8-8.8 s against 0.22-0.26 s
// on an H200, eleventh session, perf/NOTES.md; CudaMemory.GeneratedWeightsMatchTheHostGenerator
// passed there).
bool generate_on_device_by_env() {
  const char* env = std::getenv("MOETRON_DUMMY_ON_DEVICE");
  const std::string v = env == nullptr ? "1" : env;
  MOETRON_CHECK(v == "0" || v == "1", "MOETRON_DUMMY_ON_DEVICE='" << v << "': expected 0 or 1");
  return v == "1";
}

// MOETRON_DENSE_GEMV_MAX_ROWS: linear layers of up to this many rows on kernels::dense_gemv
// (default: as many as it takes), 0 for cuBLAS everywhere (A/B measurements). Against cuBLAS on
// an H200 (perf/NOTES.md, sixteenth session): decode steps at batch 1 -3% (Mixtral) to -10%
// (Qwen1.5), batch 8 -0.3% to -6%, batch 16 -1.3% (OLMoE), -2.4% (Qwen1.5) and +0.4% (Mixtral).
int64_t dense_gemv_max_rows_by_env() {
  const char* env = std::getenv("MOETRON_DENSE_GEMV_MAX_ROWS");
  if (env == nullptr) return kernels::kDenseGemvMaxRows;
  const std::optional<uint64_t> n = parse_decimal(env);
  MOETRON_CHECK(n && *n <= static_cast<uint64_t>(kernels::kDenseGemvMaxRows),
                "MOETRON_DENSE_GEMV_MAX_ROWS='" << env << "': expected 0 to " << kernels::kDenseGemvMaxRows);
  return static_cast<int64_t>(*n);
}

// MOETRON_DOWN_SPLITS: the wide tiles' down-projection K splits (kernels::DownSplit): 0 or unset
// picks them (kernels::wide_down_splits), 1 to kMaxDownSplits forces that many (A/B measurements).
int down_splits_by_env() {
  const char* env = std::getenv("MOETRON_DOWN_SPLITS");
  if (env == nullptr) return 0;
  const std::optional<uint64_t> n = parse_decimal(env);
  MOETRON_CHECK(n && *n <= static_cast<uint64_t>(kernels::kMaxDownSplits),
                "MOETRON_DOWN_SPLITS='" << env << "': expected 0 (automatic) to " << kernels::kMaxDownSplits);
  return static_cast<int>(*n);
}

int expert_gemm_streams() {
  const char* env = std::getenv("MOETRON_EXPERT_STREAMS");
  const std::string v = env == nullptr ? "8" : env;
  const std::optional<uint64_t> n = parse_decimal(v);
  MOETRON_CHECK(n && *n >= 1 && *n <= 16, "MOETRON_EXPERT_STREAMS='" << v << "': expected 1 to 16");
  return static_cast<int>(*n);
}

// Whether the path runs the Hopper grouped kernel (alone or beside cuBLAS).
bool runs_hopper_kernel(PrefillExpertPath path) {
  return path == PrefillExpertPath::kHopper || path == PrefillExpertPath::kHopperCublas;
}

// The path's MOETRON_EXPERT_GEMM name, as kernel settings record it.
const char* prefill_path_name(PrefillExpertPath path) {
  switch (path) {
    case PrefillExpertPath::kCublas: return "cublas";
    case PrefillExpertPath::kTiles: return "tiles";
    case PrefillExpertPath::kHopper: return "wgmma";
    case PrefillExpertPath::kHopperCublas: return "wgmma+cublas";
  }
  return "?";
}

// Which calls the path gives to the per-expert cuBLAS GEMMs: by its name, as the predictor reads
// it from a profile measured under it (bench/profile.hpp, expert_gemm_rule_of_profile).
ExpertGemmRule expert_gemm_rule_of(PrefillExpertPath path) {
  return expert_gemm_rule_of_path_name(prefill_path_name(path), ExpertGemmRule::kHostCost);
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// Ops::kernel_settings: the object's own choices, then the process-wide ones (kernels.hpp).
std::string format_kernel_settings(PrefillExpertPath prefill, DecodeExpertKernel decode, int64_t dense_gemv_max_rows,
                                   int down_splits) {
  std::ostringstream os;
  os << "expert_gemm=" << prefill_path_name(prefill) << ",expert_streams=" << expert_gemm_streams()
     << ",decode_experts=" << (decode == DecodeExpertKernel::kMma ? "mma" : "cuda-cores")
     << ",dense_gemv_max_rows=" << dense_gemv_max_rows << ",down_splits=" << down_splits
     << ",pdl=" << (kernels::pdl_enabled() ? 1 : 0) << ",attention_min_keys=" << kernels::attention_min_keys_per_split()
     << ",sampler_blocks_per_row=" << kernels::sampler_forced_blocks_per_row();
  return os.str();
}

static_assert(kExpertHopperMinMeanRows == kernels::kMmaTileMaxMeanRows + 1,
              "the Hopper GEMMs take over where the 32-row tensor-core GEMVs stop");

// Shared memory a kernel may take without opting in (every supported architecture).
constexpr size_t kDefaultSmemPerBlock = 48 * 1024;

}  // namespace

bool cuda_device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

CudaOps::CudaOps(int device, size_t arena_bytes) : device_(device), arena_bytes_(arena_bytes) {
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  MOETRON_CHECK(device >= 0 && device < count,
                "CUDA device " << device << " does not exist (" << count << " visible)");
  CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  num_sms_ = prop.multiProcessorCount;
  device_name_ = prop.name;
  MOETRON_CHECK(prop.major >= 8, "CUDA device " << device << " (" << prop.name
                                                << ") has compute capability " << prop.major
                                                << "." << prop.minor << "; Moetron needs 8.0+");
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&cublas_));
  CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes));
  CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes));
  decode_expert_kernel_ = decode_expert_kernel_by_env();
  generate_on_device_ = generate_on_device_by_env();
  dense_gemv_max_rows_ = dense_gemv_max_rows_by_env();
  down_splits_ = down_splits_by_env();
  wide_blocks_per_sm_ = kernels::wide_blocks_per_sm();
  CUDA_CHECK(cudaMalloc(&split_counters_, kSplitCounters * sizeof(int)));
  CUDA_CHECK(cudaMemset(split_counters_, 0, kSplitCounters * sizeof(int)));
  set_prefill_expert_path(prefill_expert_path_by_env());
  if (arena_bytes_ > 0) CUDA_CHECK(cudaMalloc(&arena_, arena_bytes_));
}

CudaOps::~CudaOps() {
  // Destructors must not throw: release what exists and ignore late errors.
  if (stream_) cudaStreamSynchronize(stream_);
  expert_gemms_.reset();
  if (cublas_) cublasDestroy(cublas_);
  cudaFree(cublas_workspace_);
  cudaFree(split_counters_);
  cudaFree(arena_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaOps::name() const {
  std::ostringstream os;
  os << "cuda:" << device_ << " (" << device_name_ << ")";
  return os.str();
}

std::string CudaOps::kernel_settings() const {
  return format_kernel_settings(prefill_path_, decode_expert_kernel_, dense_gemv_max_rows_, down_splits_);
}

std::string cuda_kernel_settings_by_env() {
  return format_kernel_settings(prefill_expert_path_by_env(), decode_expert_kernel_by_env(),
                                dense_gemv_max_rows_by_env(), down_splits_by_env());
}

// ---- memory -------------------------------------------------------------------------------------

Tensor CudaOps::unallocated(DType dtype, std::vector<int64_t> shape, Device device) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.device = device;
  return t;
}

Tensor CudaOps::alloc(DType dtype, std::vector<int64_t> shape) {
  Tensor t = unallocated(dtype, std::move(shape), Device::Cuda);
  const size_t bytes = t.nbytes();
  if (bytes == 0) return t;
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  MOETRON_CHECK(status == cudaSuccess, "out of GPU memory on cuda:"
                                           << device_ << " allocating " << t.describe() << " ("
                                           << bytes << " bytes): " << cudaGetErrorString(status));
  t.data = p;
  t.owner = std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
  return t;
}

Tensor CudaOps::temp(DType dtype, std::vector<int64_t> shape) {
  Tensor t = unallocated(dtype, std::move(shape), Device::Cuda);
  const size_t bytes = temp_arena_bytes(t.nbytes());
  MOETRON_CHECK(arena_used_ + bytes <= arena_bytes_,
                "CUDA temporary arena exhausted: " << t.describe() << " needs " << bytes
                                                   << " bytes, " << arena_used_ << " of "
                                                   << arena_bytes_
                                                   << " are in use this step. The arena is sized "
                                                      "for the largest step of --max-batch-tokens "
                                                      "tokens and --max-batch sequences: lower "
                                                      "them (the estimate, step_arena_bytes, "
                                                      "missed this step's temporaries: a bug)");
  t.data = static_cast<char*>(arena_) + arena_used_;
  arena_used_ += bytes;
  return t;
}

void CudaOps::reset_temps() { arena_used_ = 0; }

void CudaOps::temp_resume(size_t mark) {
  MOETRON_ASSERT(mark <= arena_bytes_);
  arena_used_ = mark;
}

void CudaOps::temp_release(size_t mark) {
  MOETRON_ASSERT(mark <= arena_used_);
  arena_used_ = mark;
}

Tensor CudaOps::upload_weight(const Tensor& host) {
  MOETRON_CHECK(host.device == Device::Cpu,
                "upload_weight: source must be on the host, got " << host.describe());
  MOETRON_CHECK(is_float_dtype(host.dtype),
                "upload_weight: weights must be F32, F16 or BF16, got " << host.describe());
  Tensor out = alloc(DType::BF16, host.shape);
  const int64_t n = host.numel();
  if (n == 0) return out;
  if (host.dtype == DType::BF16) {
    // From page-locked memory (staging_tensor) the copy runs after this returns.
    CUDA_CHECK(cudaMemcpyAsync(out.data, host.data, host.nbytes(), cudaMemcpyHostToDevice,
                               stream_));
    keep_until_copied(host.owner);
  } else {
    // Convert on the device: one staging copy of the source, freed once the kernel is done.
    Tensor staging = alloc(host.dtype, host.shape);
    CUDA_CHECK(cudaMemcpyAsync(staging.data, host.data, host.nbytes(), cudaMemcpyHostToDevice,
                               stream_));
    if (host.dtype == DType::F32)
      kernels::float_to_bf16(f32(staging), n, bf(out), stream_);
    else
      kernels::half_to_bf16(static_cast<const __half*>(staging.data), n, bf(out), stream_);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  return out;
}

Tensor CudaOps::generate_weight(const std::vector<GeneratedRows>& parts, DType source_dtype,
                                std::vector<int64_t> shape) {
  if (!generate_on_device_) return Ops::generate_weight(parts, source_dtype, std::move(shape));
  MOETRON_CHECK(is_float_dtype(source_dtype),
                "generate_weight: weights must be F32, F16 or BF16, got " << dtype_name(source_dtype));
  Tensor out = alloc(DType::BF16, std::move(shape));
  int64_t offset = 0;  // elements of `out` written so far
  for (const GeneratedRows& p : parts) {
    const int64_t n = p.rows * p.cols;
    MOETRON_ASSERT(offset + n <= out.numel());
    if (p.zeros && n > 0)
      CUDA_CHECK(cudaMemsetAsync(bf(out) + offset, 0, static_cast<size_t>(n) * sizeof(bf16), stream_));
    else if (!p.zeros)
      kernels::fill_random_rows(p.fill, source_dtype, p.first, p.row_stride, p.rows, p.cols, bf(out) + offset, stream_);
    offset += n;
  }
  MOETRON_ASSERT(offset == out.numel());
  return out;
}

void CudaOps::do_copy_from_host(Tensor& dst, const void* src) {
  if (dst.nbytes() == 0) return;
  // From pageable memory the runtime stages the bytes before returning, so src may be reused.
  CUDA_CHECK(cudaMemcpyAsync(dst.data, src, dst.nbytes(), cudaMemcpyHostToDevice, stream_));
}

void CudaOps::do_to_host(const Tensor& src, void* dst) {
  if (src.nbytes() > 0)
    CUDA_CHECK(cudaMemcpyAsync(dst, src.data, src.nbytes(), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaOps::do_copy(const Tensor& src, Tensor& dst) {
  if (src.nbytes() == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDefault, stream_));
}

void CudaOps::do_copy_columns(const Tensor& src, int64_t width, Tensor& dst, int64_t col) {
  if (src.rows() == 0) return;
  const size_t elem = dtype_size(src.dtype);
  CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(dst.data) + static_cast<size_t>(col) * elem,
                               static_cast<size_t>(dst.cols()) * elem, src.data,
                               static_cast<size_t>(src.cols()) * elem,
                               static_cast<size_t>(width) * elem,
                               static_cast<size_t>(src.rows()), cudaMemcpyDeviceToDevice, stream_));
}

void CudaOps::do_take_columns(const Tensor& src, int64_t col, int64_t width, Tensor& dst) {
  const size_t elem = dtype_size(src.dtype);
  CUDA_CHECK(cudaMemcpy2DAsync(dst.data, static_cast<size_t>(width) * elem,
                               static_cast<const char*>(src.data) + static_cast<size_t>(col) * elem,
                               static_cast<size_t>(src.cols()) * elem,
                               static_cast<size_t>(width) * elem,
                               static_cast<size_t>(src.rows()), cudaMemcpyDeviceToDevice, stream_));
}

void CudaOps::do_fill_zero(Tensor& t) {
  if (t.nbytes() > 0) CUDA_CHECK(cudaMemsetAsync(t.data, 0, t.nbytes(), stream_));
}

void CudaOps::sync() { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

int64_t CudaOps::free_memory_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<int64_t>(free_bytes);
}

// ---- dense math ---------------------------------------------------------------------------------

void CudaOps::do_embed(const Tensor& ids, const Tensor& table, Tensor& out) {
  kernels::gather_rows(bf(table), table.rows(), table.cols(), i32(ids), ids.numel(), bf(out),
                       stream_);
}

void CudaOps::do_rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) {
  const int64_t cols = w.numel();
  kernels::rmsnorm(bf(x), bf(w), x.numel() / cols, cols, eps, bf(out), stream_);
}

void CudaOps::do_add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                             Tensor& out) {
  const int64_t cols = w.numel();
  kernels::add_rmsnorm(bf(residual), bf(delta), bf(w), residual.numel() / cols, cols, eps,
                       bf(out), stream_);
}

void CudaOps::do_row_sumsq(const Tensor& x, Tensor& sumsq) {
  kernels::row_sumsq(bf(x), x.rows(), x.cols(), f32(sumsq), stream_);
}

void CudaOps::do_rmsnorm_with_sumsq(const Tensor& x, const Tensor& sumsq, int64_t total_cols,
                                    const Tensor& w, float eps, Tensor& out) {
  kernels::rmsnorm_with_sumsq(bf(x), f32(sumsq), x.rows(), x.cols(), total_cols, bf(w), eps,
                              bf(out), stream_);
}

void CudaOps::set_prefill_expert_path(PrefillExpertPath path) {
  MOETRON_CHECK(!runs_hopper_kernel(path) || kernels::grouped_gemm_sm90_available(),
                "MOETRON_EXPERT_GEMM=" << prefill_path_name(path)
                                       << ": the Hopper expert GEMMs need a compute capability 9.0 GPU and a build "
                                          "for sm_90a (CMAKE_CUDA_ARCHITECTURES with 90a); device "
                                       << device_ << " (" << device_name_ << ") cannot run them");
  prefill_path_ = path;
  if (expert_gemm_rule_of(path) != ExpertGemmRule::kNone && !expert_gemms_)  // it runs cuBLAS GEMMs
    expert_gemms_ = std::make_shared<cuda::ExpertGemmStreams>(expert_gemm_streams(), num_sms_);
}

void CudaOps::set_dense_gemv_max_rows(int64_t rows) {
  MOETRON_CHECK(rows >= 0 && rows <= kernels::kDenseGemvMaxRows,
                "dense GEMV rows " << rows << ": expected 0 to " << kernels::kDenseGemvMaxRows);
  dense_gemv_max_rows_ = rows;
}

void CudaOps::do_linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) {
  const int64_t m = x.rows(), n = w.dim(0), k = x.cols();
  const bf16* b = bias && bias->defined() ? bf(*bias) : nullptr;
  MOETRON_CHECK(b == nullptr || out.dtype == DType::BF16,
                "linear: a bias needs a BF16 output, got " << out.describe());
  if (m <= dense_gemv_max_rows_ && kernels::dense_gemv_supports(m, n, k, x.data, w.data)) {
    if (out.dtype == DType::F32)
      kernels::dense_gemv(bf(x), bf(w), nullptr, m, n, k, f32(out), stream_);
    else
      kernels::dense_gemv(bf(x), bf(w), b, m, n, k, bf(out), stream_);
    return;
  }
  cuda::gemm_nt(cublas_, bf(x), bf(w), m, n, k, out.data, out.dtype == DType::F32);
  if (b) kernels::add_bias_rows(bf(out), b, m, n, stream_);
}

void CudaOps::do_add_inplace(Tensor& acc, const Tensor& x) {
  kernels::add_inplace(bf(acc), bf(x), acc.numel(), stream_);
}

void CudaOps::do_clamp_inplace(Tensor& x, float limit) {
  kernels::clamp_inplace(bf(x), x.numel(), limit, stream_);
}

void CudaOps::do_rope(Tensor& q, Tensor& k, const Tensor& positions, int64_t head_dim,
                      double theta) {
  kernels::rope(bf(q), bf(k), i32(positions), q.rows(), q.cols() / head_dim, k.cols() / head_dim,
                head_dim, static_cast<float>(theta), stream_);
}

// ---- attention ----------------------------------------------------------------------------------

void CudaOps::do_attention_inputs(const Tensor& qkv, const QkNormSpec& norm,
                                  const Tensor& positions, int64_t head_dim, double theta,
                                  KvCache& cache, const BatchTensors& batch, Tensor& q) {
  const int64_t q_cols = q.cols(), kv_cols = cache.k.dim(2) * cache.k.dim(3);
  // Rows too wide for one block's shared memory take the single operators.
  if (kernels::attention_inputs_smem_bytes(q_cols, kv_cols, head_dim) > kDefaultSmemPerBlock) {
    Ops::do_attention_inputs(qkv, norm, positions, head_dim, theta, cache, batch, q);
    return;
  }
  const int kind = norm.kind == HeadNorm::PerHead    ? kernels::kHeadNormPerHead
                   : norm.kind == HeadNorm::WholeRow ? kernels::kHeadNormWholeRow
                                                     : kernels::kHeadNormNone;
  const bool normed = norm.kind != HeadNorm::None;
  kernels::attention_inputs(bf(qkv), q_cols, kv_cols, i32(positions), i32(batch.slot_mapping),
                            qkv.rows(), head_dim, static_cast<float>(theta), kind,
                            normed ? bf(norm.q_weight) : nullptr,
                            normed ? bf(norm.k_weight) : nullptr, norm.eps, bf(q), bf(cache.k),
                            bf(cache.v), stream_);
}

void CudaOps::do_kv_append(const Tensor& k, const Tensor& v, KvCache& cache,
                           const BatchTensors& batch) {
  kernels::kv_append(bf(k), bf(v), i32(batch.slot_mapping), k.rows(), k.cols(), bf(cache.k),
                     bf(cache.v), stream_);
}

void CudaOps::do_attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch,
                           int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                           Tensor& out) {
  MOETRON_CHECK(kernels::attention_head_dim_supported(static_cast<int>(head_dim)),
                "attention: head_dim " << head_dim << " is not supported on CUDA (16, 32, 64, 96 or 128)");
  MOETRON_CHECK(num_q_heads / num_kv_heads <= kernels::kAttentionMaxGroup,
                "attention: " << num_q_heads << " query heads over " << num_kv_heads
                              << " KV heads: groups of at most " << kernels::kAttentionMaxGroup
                              << " on CUDA");
  // The kernel numbers cache slots (block x block size + offset) in 32 bits.
  MOETRON_CHECK(cache.k.dim(0) * cache.k.dim(1) <= std::numeric_limits<int32_t>::max(),
                "attention: a KV cache of " << cache.k.dim(0) * cache.k.dim(1)
                    << " token slots is more than the CUDA kernel indexes (2^31 - 1): lower "
                       "--gpu-memory-fraction");
  kernels::PagedAttentionArgs args;
  args.q = bf(q);
  args.positions = i32(batch.positions);
  args.k_cache = bf(cache.k);
  args.v_cache = bf(cache.v);
  args.query_start = i32(batch.query_start);
  args.kv_lens = i32(batch.kv_lens);
  args.block_tables = i32(batch.block_tables);
  args.num_tokens = static_cast<int>(batch.num_tokens);
  args.num_seqs = static_cast<int>(batch.num_seqs);
  args.num_q_heads = static_cast<int>(num_q_heads);
  args.num_kv_heads = static_cast<int>(num_kv_heads);
  args.head_dim = static_cast<int>(head_dim);
  args.block_size = static_cast<int>(batch.block_size);
  args.max_blocks_per_seq = static_cast<int>(batch.max_blocks_per_seq);
  args.max_kv_len = static_cast<int>(batch.max_kv_len);
  args.scale = scale;
  args.out = bf(out);
  const kernels::AttentionPlan plan = kernels::plan_attention(args, num_sms_);
  void* workspace = nullptr;
  if (plan.workspace_bytes > 0)
    workspace = temp(DType::F32, {static_cast<int64_t>(plan.workspace_bytes / sizeof(float))}).data;
  kernels::paged_attention(args, plan, workspace, stream_);
}

// ---- mixture of experts -------------------------------------------------------------------------

void CudaOps::do_router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids,
                             Tensor& weights, const Tensor& valid_tokens) {
  const int64_t experts = logits.cols();
  MOETRON_CHECK(experts <= kernels::kRouterMaxExperts,
                "router_topk: " << experts << " experts; the CUDA router handles at most "
                                << kernels::kRouterMaxExperts);
  kernels::router_topk(logits.data, logits.dtype == DType::BF16, logits.rows(), experts, k, renormalize,
                       valid_tokens.defined() ? i32(valid_tokens) : nullptr, i32(ids), f32(weights), stream_);
}

void CudaOps::do_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                             const ExpertWeights& experts, Tensor& out, int64_t expected_slots) {
  run_moe_experts(x, ids, weights, experts, out, expected_slots, nullptr);
}

// The count rides in the routing kernel: at batch 1 its own launch was one more link in the
// chain of dependent kernels between the router and the expert GEMVs (2.1 us alone under ncu;
// dropping it saved about 0.4 us a launch in a replayed step on an H200, perf/NOTES.md,
// seventeenth session).
void CudaOps::do_moe_experts_counted(const Tensor& x, const Tensor& ids, const Tensor& weights,
                                     const ExpertWeights& experts, Tensor& out, int64_t expected_slots,
                                     Tensor& served) {
  run_moe_experts(x, ids, weights, experts, out, expected_slots, &served);
}

void CudaOps::run_moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                              const ExpertWeights& experts, Tensor& out, int64_t expected_slots,
                              Tensor* served) {
  const int64_t tokens = x.rows(), hidden = x.cols(), k = ids.cols();
  if (experts.num_local == 0 || tokens == 0) {
    if (served != nullptr) do_accumulate_expert_counts(ids, *served);
    fill_zero(out);
    return;
  }
  const int64_t local = experts.num_local, inter = experts.down.cols();
  MOETRON_CHECK(hidden % kCudaExpertWidthMultiple == 0 && inter % kCudaExpertWidthMultiple == 0,
                "moe_experts: hidden " << hidden << " and intermediate " << inter
                                       << " must be multiples of " << kCudaExpertWidthMultiple << " on CUDA");

  const int64_t slots = tokens * k;
  const DecodeExpertKernel decode = decode_expert_kernel_;
  // The kernels are chosen by the rows an expert is expected to get: a decode dispatch's buffers
  // hold every peer's full capacity, mostly padding (16 ranks of the OLMoE shape: 256 rows where
  // 32 are expected; chosen by the 256, the 64-row WMMA tiles took 50 us a launch against 9-11
  // for the 32-row GEMVs: ncu, H200, twelfth session). Any choice computes every row: the tiles are counted from
  // `slots` on the device.
  const int64_t planned_tokens = expert_call_planned_tokens(tokens, expected_slots, k);
  // The rule the predictor prices (backend/expert_paths.hpp): the GEMMs read the rows copied
  // into expert order, also when the routing resolved them (its slot ranks hold for the copy);
  // their routing is the largest tiles' (their offsets are all the GEMMs read).
  // The Hopper GEMMs run where the cuBLAS ones would and on decode-sized loads from
  // kExpertHopperMinMeanRows rows an expert, also while capturing (nothing goes to the host).
  const bool by_gemms = expert_call_by_gemms(planned_tokens, k, local, hidden, inter, !capturing(stream_),
                                             expert_gemm_rule_of(prefill_path_));
  const bool by_hopper =
      !by_gemms && runs_hopper_kernel(prefill_path_) && expert_call_by_hopper_gemms(planned_tokens, k, local);
  const int tile_rows = by_gemms || by_hopper ? kernels::kLargeTileRows
                                 : kernels::grouped_gemm_tile_rows(planned_tokens, k, local, hidden, inter, num_sms_, decode);
  kernels::MoeRouting routing;
  routing.counts = i32(temp(DType::I32, {local}));
  routing.offsets = i32(temp(DType::I32, {local + 1}));
  routing.tile_offsets = i32(temp(DType::I32, {local + 1}));
  routing.slot_rank = i32(temp(DType::I32, {slots}));
  routing.row_of_slot = i32(temp(DType::I32, {slots}));
  routing.token_of_row = i32(temp(DType::I32, {slots}));
  routing.max_tiles = kernels::grouped_gemm_max_tiles(tile_rows, slots, local);
  routing.tiles = static_cast<int4*>(temp(DType::I32, {routing.max_tiles, 4}).data);
  if (served != nullptr) {
    routing.served = static_cast<int64_t*>(served->data);
    routing.served_experts = served->numel();
  }
  Tensor act = temp(DType::BF16, {slots, inter});

  // Few slots: the routing kernel also resolves each permuted row's token, and the gate/up GEMM
  // reads the tokens' rows in place; otherwise they are copied into expert order first.
  const bool rows_resolved = kernels::moe_route(i32(ids), tokens, k, experts.first_expert, local,
                                                tile_rows, routing, stream_);
  const bf16* gate_up_input = bf(x);
  const int32_t* token_of_row = routing.token_of_row;
  if (!rows_resolved || by_gemms || by_hopper) {  // TMA and cuBLAS read rows in expert order
    Tensor x_perm = temp(DType::BF16, {slots, hidden});
    kernels::moe_permute(bf(x), i32(ids), tokens, k, hidden, experts.first_expert, routing,
                         bf(x_perm), stream_);
    gate_up_input = bf(x_perm);
    token_of_row = nullptr;
  }
  if (by_gemms || by_hopper) {
    Tensor y_perm = temp(DType::BF16, {slots, hidden});
    if (by_gemms) {
      expert_gemms_by_cublas(gate_up_input, experts, routing.offsets, hidden, inter, act, y_perm);
    } else {
      kernels::grouped_gemm_sm90_swiglu(gate_up_input, bf(experts.gate_up), routing, local, slots, hidden, inter,
                                        bf(act), stream_);
      kernels::grouped_gemm_sm90_down(bf(act), bf(experts.down), routing, local, slots, inter, hidden, bf(y_perm),
                                      stream_);
    }
    kernels::moe_unpermute_combine(bf(y_perm), routing.row_of_slot, f32(weights), tokens, k,
                                   hidden, bf(out), stream_);
    return;
  }
  kernels::grouped_gemm_swiglu(tile_rows, decode, gate_up_input, token_of_row, bf(experts.gate_up),
                               routing, local, slots, hidden, inter, bf(act), stream_);
  if (tokens == 1 && rows_resolved) {
    // One token: its experts' down projections and their weighted sum in one launch.
    kernels::gemv_down_combine(bf(act), routing.row_of_slot, i32(ids), f32(weights), k,
                               experts.first_expert, bf(experts.down), inter, hidden, bf(out),
                               stream_);
    return;
  }
  Tensor y_perm = temp(DType::BF16, {slots, hidden});
  const kernels::DownSplit split =
      tile_rows == kernels::kWideTileRows ? down_split(planned_tokens, k, local, hidden, inter, slots) : kernels::DownSplit{};
  kernels::grouped_gemm_down(tile_rows, decode, bf(act), bf(experts.down), routing, local, slots, inter,
                             hidden, bf(y_perm), stream_, split);
  kernels::moe_unpermute_combine(bf(y_perm), routing.row_of_slot, f32(weights), tokens, k,
                                 hidden, bf(out), stream_);
}

// The split's float32 partial sums take only the arena's free room: where the step's estimate
// (step_arena_bytes) left too little, the down projection runs unsplit rather than fail.
kernels::DownSplit CudaOps::down_split(int64_t planned_tokens, int64_t k, int64_t local, int64_t hidden,
                                       int64_t inter, int64_t slots) {
  const int splits = down_splits_ > 0 ? down_splits_
                                      : kernels::wide_down_splits(planned_tokens, k, local, hidden, inter,
                                                                  num_sms_, wide_blocks_per_sm_);
  const int64_t partial_floats = splits * slots * hidden;
  if (splits <= 1 || arena_used_ + temp_arena_bytes(partial_floats * sizeof(float)) > arena_bytes_) return {};
  return {splits, f32(temp(DType::F32, {partial_floats})), split_counters_, kSplitCounters};
}

void CudaOps::expert_gemms_by_cublas(const void* x_perm, const ExpertWeights& experts,
                                     const int32_t* device_offsets, int64_t hidden, int64_t inter,
                                     Tensor& act, Tensor& y_perm) {
  std::vector<int32_t> offsets(static_cast<size_t>(experts.num_local + 1));
  CUDA_CHECK(cudaMemcpyAsync(offsets.data(), device_offsets, offsets.size() * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  const int64_t rows = offsets.back();
  if (rows == 0) return;  // no row routed here: the combine reads none of y_perm
  Tensor gate_up = temp(DType::BF16, {rows, 2 * inter});
  cuda::ExpertGemmOperands op;
  op.x_perm = static_cast<const bf16*>(x_perm);
  op.gate_up_w = bf(experts.gate_up);
  op.down_w = bf(experts.down);
  op.hidden = hidden;
  op.inter = inter;
  op.gate_up = bf(gate_up);
  op.act = bf(act);
  op.y = bf(y_perm);
  expert_gemms_->run(stream_, offsets, op);
}

void CudaOps::do_swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down,
                            Tensor& out) {
  const int64_t tokens = x.rows(), inter = down.dim(1);
  Tensor gu = temp(DType::BF16, {tokens, 2 * inter});
  Tensor act = temp(DType::BF16, {tokens, inter});
  linear(x, gate_up, nullptr, gu);
  kernels::silu_mul(bf(gu), tokens, inter, bf(act), stream_);
  linear(act, down, nullptr, out);
}

void CudaOps::do_add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w,
                                   const Tensor& y) {
  kernels::add_sigmoid_gated(bf(acc), bf(x), bf(gate_w), bf(y), acc.rows(), acc.cols(), stream_);
}

void CudaOps::do_gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) {
  kernels::gather_rows(bf(x), x.rows(), x.cols(), i32(rows), rows.numel(), bf(out), stream_);
}

void CudaOps::do_scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows,
                                  const Tensor& scale) {
  kernels::scatter_add_rows(bf(acc), acc.rows(), acc.cols(), bf(x), i32(rows), f32(scale),
                            x.rows(), stream_);
}

void CudaOps::do_to_float(const Tensor& x, Tensor& out) {
  if (x.dtype == DType::F32) {
    copy(x, out);
    return;
  }
  kernels::bf16_to_float(bf(x), x.numel(), f32(out), stream_);
}

void CudaOps::do_accumulate_expert_counts(const Tensor& ids, Tensor& counts) {
  kernels::accumulate_expert_counts(i32(ids), ids.numel(), counts.numel(),
                                    static_cast<int64_t*>(counts.data), stream_);
}

void CudaOps::do_accumulate_routing(const Tensor& records, int64_t tokens, Tensor& counts,
                                    Tensor& pairs) {
  kernels::accumulate_routing(i32(records), records.dim(0), records.dim(1), tokens,
                              records.dim(2), counts.dim(1), static_cast<int64_t*>(counts.data),
                              static_cast<int64_t*>(pairs.data), stream_);
}

void CudaOps::do_add_row_bias(Tensor& x, const Tensor& bias) {
  kernels::add_row_bias_f32(f32(x), f32(bias), x.rows(), x.cols(), stream_);
}

void CudaOps::do_pack_dispatch(const Tensor& ids, const Tensor& weights, int64_t first,
                               int64_t last, int64_t expert_set_size, int64_t expert_shards,
                               int64_t capacity, Tensor& rows, Tensor& experts, Tensor& scales) {
  const int64_t entries = rows.numel(), k = ids.numel() > 0 ? ids.cols() : 1;
  if (entries == 0) return;  // capacity 0: no destination has room, nothing to write
  kernels::pack_dispatch(i32(ids), f32(weights), k, first, last, expert_set_size, expert_shards,
                         capacity, entries / capacity, i32(rows), i32(experts), f32(scales),
                         stream_);
}

void CudaOps::do_route_to_replicas(const Tensor& ids, const Tensor& table, Tensor& out) {
  if (ids.numel() == 0) return;
  kernels::route_to_replicas(i32(ids), ids.rows(), ids.cols(), i32(table), table.rows(), table.cols(), i32(out),
                             stream_);
}

void CudaOps::do_pack_from_peers(const Tensor& ids, const Tensor& tables, const Tensor& senders, int64_t tp_size,
                                 int64_t expert_set_size, int64_t expert_shards, int64_t destination,
                                 int64_t capacity, Tensor& rows, Tensor& experts) {
  const int64_t k = ids.numel() > 0 ? ids.cols() : 1;
  kernels::pack_from_peers(i32(ids), ids.rows(), k, i32(tables), tables.dim(1), tables.dim(2), i32(senders),
                           senders.rows(), tp_size, expert_set_size, destination / expert_shards, capacity, i32(rows),
                           i32(experts), stream_);
}

void CudaOps::argmax(const Tensor& logits, Tensor& ids) {
  MOETRON_CHECK(logits.device == Device::Cuda &&
                    (logits.dtype == DType::BF16 || logits.dtype == DType::F32),
                "argmax: logits must be BF16 or F32 on cuda, got " << logits.describe());
  expect(ids, DType::I32, "argmax", "ids");
  expect_numel(ids, logits.rows(), "argmax", "ids");
  kernels::argmax_rows(logits.data, logits.dtype == DType::BF16, logits.rows(), logits.cols(),
                       i32(ids), stream_);
}

void CudaOps::do_sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                             const std::vector<uint64_t>& steps, Tensor& ids) {
  const int64_t rows = logits.rows(), vocab = logits.cols();
  MOETRON_CHECK(static_cast<int64_t>(params.size()) == rows &&
                    static_cast<int64_t>(steps.size()) == rows,
                "sample_rows: " << params.size() << " settings and " << steps.size()
                                << " steps for logits " << logits.describe());
  MOETRON_CHECK(vocab <= std::numeric_limits<int32_t>::max(),
                "sample_rows: " << vocab << " tokens do not fit I32 ids");
  if (rows == 0 || vocab == 0) return;
  std::vector<radix::RowParams> packed(static_cast<size_t>(rows));
  for (size_t r = 0; r < packed.size(); ++r) {
    packed[r].temperature = params[r].temperature;
    packed[r].top_k = params[r].top_k;
    packed[r].top_p = params[r].top_p;
    packed[r].seed = params[r].seed;
    packed[r].step = steps[r];
  }
  // I64 rows of 4: one RowParams each.
  static_assert(sizeof(radix::RowParams) == 4 * sizeof(int64_t), "RowParams is 32 bytes");
  if (!sampling_params_.defined() || sampling_params_.rows() < rows) {
    sync();  // a launch in flight may still read the buffer being replaced
    sampling_params_ = alloc(DType::I64, {rows, 4});
  }
  Tensor device_params = sampling_params_.slice_rows(0, rows);
  copy_from_host(device_params, packed.data());
  const size_t workspace = kernels::sample_rows_workspace_bytes(rows, vocab);
  const int64_t workspace_words = static_cast<int64_t>((workspace + 7) / 8);  // I64 words
  if (workspace > 0 && (!sampling_workspace_.defined() || sampling_workspace_.numel() < workspace_words)) {
    sync();  // as above
    sampling_workspace_ = alloc(DType::I64, {workspace_words});
  }
  kernels::sample_rows(f32(logits), rows, vocab,
                       static_cast<const radix::RowParams*>(device_params.data), i32(ids),
                       workspace > 0 ? sampling_workspace_.data : nullptr, workspace, stream_);
}

std::unique_ptr<Ops> make_cuda_ops(int device, size_t arena_bytes) {
  return std::make_unique<CudaOps>(device, arena_bytes);
}

}  // namespace moetron
