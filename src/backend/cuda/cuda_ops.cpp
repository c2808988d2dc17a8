// CudaOps: argument checks, temporaries and launches; the math lives in kernels/ and cuBLAS.
#include "moetron/backend/cuda_ops.hpp"

#include <cublas_v2.h>

#include <limits>
#include <sstream>

#include "cublas_gemm.hpp"
#include "moetron/core/error.hpp"
#include "moetron/sampling/radix_sampling.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace {

using kernels::bf16;

constexpr size_t kTempAlignment = 256;
constexpr size_t kCublasWorkspaceBytes = 32u << 20;  // fixed, so graph replays need no allocation

// Every Ops argument check names the operator, the argument and what it got.
void expect(const Tensor& t, DType dtype, const char* op, const char* arg) {
  MOETRON_CHECK(t.defined() && t.device == Device::Cuda && t.dtype == dtype,
                op << ": " << arg << " must be a " << dtype_name(dtype)
                   << " tensor on cuda, got " << (t.defined() ? t.describe() : "an empty tensor"));
}

void expect_numel(const Tensor& t, int64_t numel, const char* op, const char* arg) {
  MOETRON_CHECK(t.numel() == numel, op << ": " << arg << " " << t.describe() << " must have "
                                       << numel << " elements");
}

void expect_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  MOETRON_CHECK(a.shape == b.shape,
                op << ": shapes differ: " << a.describe() << " vs " << b.describe());
}

bf16* bf(const Tensor& t) { return static_cast<bf16*>(t.data); }
int32_t* i32(const Tensor& t) { return static_cast<int32_t*>(t.data); }
float* f32(const Tensor& t) { return static_cast<float*>(t.data); }

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
  if (arena_bytes_ > 0) CUDA_CHECK(cudaMalloc(&arena_, arena_bytes_));
}

CudaOps::~CudaOps() {
  // Destructors must not throw: release what exists and ignore late errors.
  if (stream_) cudaStreamSynchronize(stream_);
  if (cublas_) cublasDestroy(cublas_);
  cudaFree(cublas_workspace_);
  cudaFree(arena_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaOps::name() const {
  std::ostringstream os;
  os << "cuda:" << device_ << " (" << device_name_ << ")";
  return os.str();
}

// ---- memory -------------------------------------------------------------------------------------

Tensor CudaOps::alloc(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.device = Device::Cuda;
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
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.device = Device::Cuda;
  const size_t bytes = (t.nbytes() + kTempAlignment - 1) / kTempAlignment * kTempAlignment;
  MOETRON_CHECK(arena_used_ + bytes <= arena_bytes_,
                "CUDA temporary arena exhausted: " << t.describe() << " needs " << bytes
                                                   << " bytes, " << arena_used_ << " of "
                                                   << arena_bytes_
                                                   << " are in use this step; give the "
                                                      "backend a larger arena");
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
  MOETRON_CHECK(host.dtype == DType::F32 || host.dtype == DType::F16 || host.dtype == DType::BF16,
                "upload_weight: weights must be F32, F16 or BF16, got " << host.describe());
  Tensor out = alloc(DType::BF16, host.shape);
  const int64_t n = host.numel();
  if (n == 0) return out;
  if (host.dtype == DType::BF16) {
    CUDA_CHECK(cudaMemcpyAsync(out.data, host.data, host.nbytes(), cudaMemcpyHostToDevice,
                               stream_));
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

void CudaOps::copy_from_host(Tensor& dst, const void* src) {
  MOETRON_CHECK(dst.device == Device::Cuda,
                "copy_from_host: destination must be on cuda, got " << dst.describe());
  if (dst.nbytes() == 0) return;
  // From pageable memory the runtime stages the bytes before returning, so src may be reused.
  CUDA_CHECK(cudaMemcpyAsync(dst.data, src, dst.nbytes(), cudaMemcpyHostToDevice, stream_));
}

void CudaOps::to_host(const Tensor& src, void* dst) {
  MOETRON_CHECK(src.device == Device::Cuda,
                "to_host: source must be on cuda, got " << src.describe());
  if (src.nbytes() > 0)
    CUDA_CHECK(cudaMemcpyAsync(dst, src.data, src.nbytes(), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaOps::copy(const Tensor& src, Tensor& dst) {
  MOETRON_CHECK(src.dtype == dst.dtype && src.numel() == dst.numel(),
                "copy: " << src.describe() << " and " << dst.describe()
                         << " differ in dtype or size");
  if (src.nbytes() == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDefault, stream_));
}

void CudaOps::copy_columns(const Tensor& src, int64_t width, Tensor& dst, int64_t col) {
  MOETRON_CHECK(src.dtype == dst.dtype && src.rows() == dst.rows() && width >= 0 &&
                    width <= src.cols() && col >= 0 && col + width <= dst.cols(),
                "copy_columns: " << width << " columns of " << src.describe() << " do not fit "
                                 << dst.describe() << " at column " << col);
  if (width == 0 || src.rows() == 0) return;
  const size_t elem = dtype_size(src.dtype);
  CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(dst.data) + static_cast<size_t>(col) * elem,
                               static_cast<size_t>(dst.cols()) * elem, src.data,
                               static_cast<size_t>(src.cols()) * elem,
                               static_cast<size_t>(width) * elem,
                               static_cast<size_t>(src.rows()), cudaMemcpyDeviceToDevice, stream_));
}

void CudaOps::fill_zero(Tensor& t) {
  MOETRON_CHECK(t.device == Device::Cuda, "fill_zero: tensor must be on cuda, got "
                                              << t.describe());
  if (t.nbytes() > 0) CUDA_CHECK(cudaMemsetAsync(t.data, 0, t.nbytes(), stream_));
}

void CudaOps::sync() { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

int64_t CudaOps::free_memory_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<int64_t>(free_bytes);
}

// ---- dense math ---------------------------------------------------------------------------------

void CudaOps::embed(const Tensor& ids, const Tensor& table, Tensor& out) {
  expect(ids, DType::I32, "embed", "ids");
  expect(table, DType::BF16, "embed", "table");
  expect(out, DType::BF16, "embed", "out");
  expect_numel(out, ids.numel() * table.cols(), "embed", "out");
  kernels::gather_rows(bf(table), table.rows(), table.cols(), i32(ids), ids.numel(), bf(out),
                       stream_);
}

void CudaOps::rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) {
  expect(x, DType::BF16, "rmsnorm", "x");
  expect(w, DType::BF16, "rmsnorm", "w");
  expect(out, DType::BF16, "rmsnorm", "out");
  const int64_t cols = w.numel();
  MOETRON_CHECK(cols > 0 && x.numel() % cols == 0,
                "rmsnorm: x " << x.describe() << " is not a whole number of rows of " << cols);
  expect_numel(out, x.numel(), "rmsnorm", "out");
  kernels::rmsnorm(bf(x), bf(w), x.numel() / cols, cols, eps, bf(out), stream_);
}

void CudaOps::add_rmsnorm(Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                          Tensor& out) {
  expect(residual, DType::BF16, "add_rmsnorm", "residual");
  expect(delta, DType::BF16, "add_rmsnorm", "delta");
  expect(w, DType::BF16, "add_rmsnorm", "w");
  expect(out, DType::BF16, "add_rmsnorm", "out");
  const int64_t cols = w.numel();
  MOETRON_CHECK(cols > 0 && residual.numel() % cols == 0,
                "add_rmsnorm: residual " << residual.describe() << " is not rows of " << cols);
  expect_numel(delta, residual.numel(), "add_rmsnorm", "delta");
  expect_numel(out, residual.numel(), "add_rmsnorm", "out");
  kernels::add_rmsnorm(bf(residual), bf(delta), bf(w), residual.numel() / cols, cols, eps,
                       bf(out), stream_);
}

void CudaOps::row_sumsq(const Tensor& x, Tensor& sumsq) {
  expect(x, DType::BF16, "row_sumsq", "x");
  expect(sumsq, DType::F32, "row_sumsq", "sumsq");
  expect_numel(sumsq, x.rows(), "row_sumsq", "sumsq");
  kernels::row_sumsq(bf(x), x.rows(), x.cols(), f32(sumsq), stream_);
}

void CudaOps::rmsnorm_with_sumsq(const Tensor& x, const Tensor& sumsq, int64_t total_cols,
                                 const Tensor& w, float eps, Tensor& out) {
  expect(x, DType::BF16, "rmsnorm_with_sumsq", "x");
  expect(sumsq, DType::F32, "rmsnorm_with_sumsq", "sumsq");
  expect(w, DType::BF16, "rmsnorm_with_sumsq", "w");
  expect(out, DType::BF16, "rmsnorm_with_sumsq", "out");
  expect_numel(w, x.cols(), "rmsnorm_with_sumsq", "w");
  expect_numel(sumsq, x.rows(), "rmsnorm_with_sumsq", "sumsq");
  expect_numel(out, x.numel(), "rmsnorm_with_sumsq", "out");
  MOETRON_CHECK(total_cols >= x.cols(), "rmsnorm_with_sumsq: total_cols " << total_cols
                                            << " is smaller than this shard's " << x.cols());
  kernels::rmsnorm_with_sumsq(bf(x), f32(sumsq), x.rows(), x.cols(), total_cols, bf(w), eps,
                              bf(out), stream_);
}

void CudaOps::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) {
  expect(x, DType::BF16, "linear", "x");
  expect(w, DType::BF16, "linear", "w");
  MOETRON_CHECK(w.ndim() == 2 && w.dim(1) == x.cols(),
                "linear: weight " << w.describe() << " does not match input " << x.describe());
  const int64_t m = x.rows(), n = w.dim(0), k = x.cols();
  MOETRON_CHECK(out.device == Device::Cuda && (out.dtype == DType::BF16 || out.dtype == DType::F32),
                "linear: out must be BF16 or F32 on cuda, got " << out.describe());
  expect_numel(out, m * n, "linear", "out");
  cuda::gemm_nt(cublas_, bf(x), bf(w), m, n, k, out.data, out.dtype == DType::F32);
  if (bias && bias->defined()) {
    expect(*bias, DType::BF16, "linear", "bias");
    expect_numel(*bias, n, "linear", "bias");
    MOETRON_CHECK(out.dtype == DType::BF16, "linear: a bias needs a BF16 output, got "
                                                << out.describe());
    kernels::add_bias_rows(bf(out), bf(*bias), m, n, stream_);
  }
}

void CudaOps::add_inplace(Tensor& acc, const Tensor& x) {
  expect(acc, DType::BF16, "add_inplace", "acc");
  expect(x, DType::BF16, "add_inplace", "x");
  expect_numel(x, acc.numel(), "add_inplace", "x");
  kernels::add_inplace(bf(acc), bf(x), acc.numel(), stream_);
}

void CudaOps::clamp_inplace(Tensor& x, float limit) {
  expect(x, DType::BF16, "clamp_inplace", "x");
  kernels::clamp_inplace(bf(x), x.numel(), limit, stream_);
}

void CudaOps::rope(Tensor& q, Tensor& k, const Tensor& positions, int64_t head_dim,
                   double theta) {
  expect(q, DType::BF16, "rope", "q");
  expect(k, DType::BF16, "rope", "k");
  expect(positions, DType::I32, "rope", "positions");
  MOETRON_CHECK(head_dim > 0 && head_dim % 2 == 0 && q.cols() % head_dim == 0 &&
                    k.cols() % head_dim == 0,
                "rope: head_dim " << head_dim << " must be even and divide q " << q.describe()
                                  << " and k " << k.describe());
  MOETRON_CHECK(q.rows() == positions.numel() && k.rows() == positions.numel(),
                "rope: q " << q.describe() << ", k " << k.describe() << " and positions "
                           << positions.describe() << " disagree on the token count");
  kernels::rope(bf(q), bf(k), i32(positions), q.rows(), q.cols() / head_dim, k.cols() / head_dim,
                head_dim, static_cast<float>(theta), stream_);
}

// ---- attention ----------------------------------------------------------------------------------

void CudaOps::kv_append(const Tensor& k, const Tensor& v, KvCache& cache,
                        const BatchTensors& batch) {
  expect(k, DType::BF16, "kv_append", "k");
  expect(v, DType::BF16, "kv_append", "v");
  expect(cache.k, DType::BF16, "kv_append", "cache.k");
  expect(cache.v, DType::BF16, "kv_append", "cache.v");
  expect(batch.slot_mapping, DType::I32, "kv_append", "batch.slot_mapping");
  expect_same_shape(k, v, "kv_append");
  expect_same_shape(cache.k, cache.v, "kv_append");
  MOETRON_CHECK(cache.k.ndim() == 4 && cache.k.dim(2) * cache.k.dim(3) == k.cols(),
                "kv_append: cache " << cache.k.describe() << " does not hold rows of k "
                                    << k.describe());
  expect_numel(batch.slot_mapping, k.rows(), "kv_append", "batch.slot_mapping");
  kernels::kv_append(bf(k), bf(v), i32(batch.slot_mapping), k.rows(), k.cols(), bf(cache.k),
                     bf(cache.v), stream_);
}

void CudaOps::attention(const Tensor& q, const KvCache& cache, const BatchTensors& batch,
                        int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim, float scale,
                        Tensor& out) {
  expect(q, DType::BF16, "attention", "q");
  expect(out, DType::BF16, "attention", "out");
  expect(cache.k, DType::BF16, "attention", "cache.k");
  expect(cache.v, DType::BF16, "attention", "cache.v");
  MOETRON_CHECK(kernels::attention_head_dim_supported(static_cast<int>(head_dim)),
                "attention: head_dim " << head_dim << " is not supported on CUDA (16, 32, 64, 96 or 128)");
  MOETRON_CHECK(num_kv_heads > 0 && num_q_heads % num_kv_heads == 0 &&
                    num_q_heads / num_kv_heads <= kernels::kAttentionMaxGroup,
                "attention: " << num_q_heads << " query heads over " << num_kv_heads
                              << " KV heads: need a whole group of at most "
                              << kernels::kAttentionMaxGroup);
  MOETRON_CHECK(q.cols() == num_q_heads * head_dim && q.rows() == batch.num_tokens,
                "attention: q " << q.describe() << " is not [" << batch.num_tokens << ", "
                                << num_q_heads * head_dim << "]");
  MOETRON_CHECK(cache.k.ndim() == 4 && cache.k.dim(1) == batch.block_size &&
                    cache.k.dim(2) == num_kv_heads && cache.k.dim(3) == head_dim,
                "attention: cache " << cache.k.describe() << " is not [blocks, "
                                    << batch.block_size << ", " << num_kv_heads << ", "
                                    << head_dim << "]");
  expect_numel(out, q.numel(), "attention", "out");
  expect(batch.positions, DType::I32, "attention", "batch.positions");
  expect(batch.query_start, DType::I32, "attention", "batch.query_start");
  expect(batch.kv_lens, DType::I32, "attention", "batch.kv_lens");
  expect(batch.block_tables, DType::I32, "attention", "batch.block_tables");
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

void CudaOps::router_topk(const Tensor& logits, int64_t k, bool renormalize, Tensor& ids,
                          Tensor& weights) {
  MOETRON_CHECK(logits.device == Device::Cuda &&
                    (logits.dtype == DType::BF16 || logits.dtype == DType::F32),
                "router_topk: logits must be BF16 or F32 on cuda, got " << logits.describe());
  expect(ids, DType::I32, "router_topk", "ids");
  expect(weights, DType::F32, "router_topk", "weights");
  const int64_t experts = logits.cols();
  MOETRON_CHECK(experts <= kernels::kRouterMaxExperts,
                "router_topk: " << experts << " experts; the CUDA router handles at most "
                                << kernels::kRouterMaxExperts);
  MOETRON_CHECK(k >= 1 && k <= experts, "router_topk: top-k " << k << " outside [1, " << experts
                                                              << "]");
  expect_numel(ids, logits.rows() * k, "router_topk", "ids");
  expect_numel(weights, logits.rows() * k, "router_topk", "weights");
  kernels::router_topk(logits.data, logits.dtype == DType::BF16, logits.rows(), experts, k,
                       renormalize, i32(ids), f32(weights), stream_);
}

void CudaOps::moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                          const ExpertWeights& experts, Tensor& out) {
  expect(x, DType::BF16, "moe_experts", "x");
  expect(ids, DType::I32, "moe_experts", "ids");
  expect(weights, DType::F32, "moe_experts", "weights");
  expect(out, DType::BF16, "moe_experts", "out");
  expect_same_shape(ids, weights, "moe_experts");
  const int64_t tokens = x.rows(), hidden = x.cols(), k = ids.cols();
  MOETRON_CHECK(ids.rows() == tokens, "moe_experts: ids " << ids.describe() << " for x "
                                                          << x.describe());
  expect_numel(out, x.numel(), "moe_experts", "out");
  if (experts.num_local == 0 || tokens == 0) {
    fill_zero(out);
    return;
  }
  expect(experts.gate_up, DType::BF16, "moe_experts", "experts.gate_up");
  expect(experts.down, DType::BF16, "moe_experts", "experts.down");
  const int64_t local = experts.num_local, inter = experts.down.cols();
  MOETRON_CHECK(experts.gate_up.ndim() == 3 && experts.gate_up.dim(0) == local &&
                    experts.gate_up.dim(1) == 2 * inter && experts.gate_up.dim(2) == hidden,
                "moe_experts: gate_up " << experts.gate_up.describe() << " is not [" << local
                                        << ", " << 2 * inter << ", " << hidden << "]");
  MOETRON_CHECK(experts.down.ndim() == 3 && experts.down.dim(0) == local &&
                    experts.down.dim(1) == hidden,
                "moe_experts: down " << experts.down.describe() << " is not [" << local << ", "
                                     << hidden << ", " << inter << "]");
  MOETRON_CHECK(hidden % 8 == 0 && inter % 8 == 0,
                "moe_experts: hidden " << hidden << " and intermediate " << inter
                                       << " must be multiples of 8 on CUDA");

  const int64_t slots = tokens * k;
  kernels::MoeRouting routing;
  routing.counts = i32(temp(DType::I32, {local}));
  routing.offsets = i32(temp(DType::I32, {local + 1}));
  routing.tile_offsets = i32(temp(DType::I32, {local + 1}));
  routing.slot_rank = i32(temp(DType::I32, {slots}));
  routing.row_of_slot = i32(temp(DType::I32, {slots}));
  Tensor x_perm = temp(DType::BF16, {slots, hidden});
  Tensor act = temp(DType::BF16, {slots, inter});
  Tensor y_perm = temp(DType::BF16, {slots, hidden});

  const int tile_rows = kernels::grouped_gemm_tile_rows(tokens, k, local);
  kernels::moe_route(i32(ids), tokens, k, experts.first_expert, local, tile_rows, routing,
                     stream_);
  kernels::moe_permute(bf(x), i32(ids), tokens, k, hidden, experts.first_expert, routing,
                       bf(x_perm), stream_);
  kernels::grouped_gemm_swiglu(tile_rows, bf(x_perm), bf(experts.gate_up), routing, local, slots,
                               hidden, inter, bf(act), stream_);
  kernels::grouped_gemm_down(tile_rows, bf(act), bf(experts.down), routing, local, slots, inter,
                             hidden, bf(y_perm), stream_);
  kernels::moe_unpermute_combine(bf(y_perm), routing.row_of_slot, f32(weights), tokens, k,
                                 hidden, bf(out), stream_);
}

void CudaOps::swiglu_mlp(const Tensor& x, const Tensor& gate_up, const Tensor& down,
                         Tensor& out) {
  expect(gate_up, DType::BF16, "swiglu_mlp", "gate_up");
  expect(down, DType::BF16, "swiglu_mlp", "down");
  MOETRON_CHECK(gate_up.ndim() == 2 && down.ndim() == 2 && gate_up.dim(0) == 2 * down.dim(1),
                "swiglu_mlp: gate_up " << gate_up.describe() << " and down " << down.describe()
                                       << " are not [2I, H] and [H, I]");
  const int64_t tokens = x.rows(), inter = down.dim(1);
  Tensor gu = temp(DType::BF16, {tokens, 2 * inter});
  Tensor act = temp(DType::BF16, {tokens, inter});
  linear(x, gate_up, nullptr, gu);
  kernels::silu_mul(bf(gu), tokens, inter, bf(act), stream_);
  linear(act, down, nullptr, out);
}

void CudaOps::add_sigmoid_gated(Tensor& acc, const Tensor& x, const Tensor& gate_w,
                                const Tensor& y) {
  expect(acc, DType::BF16, "add_sigmoid_gated", "acc");
  expect(x, DType::BF16, "add_sigmoid_gated", "x");
  expect(gate_w, DType::BF16, "add_sigmoid_gated", "gate_w");
  expect(y, DType::BF16, "add_sigmoid_gated", "y");
  expect_same_shape(acc, x, "add_sigmoid_gated");
  expect_same_shape(acc, y, "add_sigmoid_gated");
  expect_numel(gate_w, x.cols(), "add_sigmoid_gated", "gate_w");
  kernels::add_sigmoid_gated(bf(acc), bf(x), bf(gate_w), bf(y), acc.rows(), acc.cols(), stream_);
}

void CudaOps::gather_rows(const Tensor& x, const Tensor& rows, Tensor& out) {
  expect(x, DType::BF16, "gather_rows", "x");
  expect(rows, DType::I32, "gather_rows", "rows");
  expect(out, DType::BF16, "gather_rows", "out");
  expect_numel(out, rows.numel() * x.cols(), "gather_rows", "out");
  kernels::gather_rows(bf(x), x.rows(), x.cols(), i32(rows), rows.numel(), bf(out), stream_);
}

void CudaOps::scatter_add_rows(Tensor& acc, const Tensor& x, const Tensor& rows,
                               const Tensor& scale) {
  expect(acc, DType::BF16, "scatter_add_rows", "acc");
  expect(x, DType::BF16, "scatter_add_rows", "x");
  expect(rows, DType::I32, "scatter_add_rows", "rows");
  expect(scale, DType::F32, "scatter_add_rows", "scale");
  MOETRON_CHECK(x.cols() == acc.cols(), "scatter_add_rows: x " << x.describe() << " and acc "
                                                               << acc.describe()
                                                               << " differ in width");
  expect_numel(rows, x.rows(), "scatter_add_rows", "rows");
  expect_numel(scale, x.rows(), "scatter_add_rows", "scale");
  kernels::scatter_add_rows(bf(acc), acc.rows(), acc.cols(), bf(x), i32(rows), f32(scale),
                            x.rows(), stream_);
}

void CudaOps::to_float(const Tensor& x, Tensor& out) {
  expect(out, DType::F32, "to_float", "out");
  expect_numel(out, x.numel(), "to_float", "out");
  if (x.dtype == DType::F32) {
    copy(x, out);
    return;
  }
  expect(x, DType::BF16, "to_float", "x");
  kernels::bf16_to_float(bf(x), x.numel(), f32(out), stream_);
}

void CudaOps::accumulate_expert_counts(const Tensor& ids, Tensor& counts) {
  expect(ids, DType::I32, "accumulate_expert_counts", "ids");
  expect(counts, DType::I64, "accumulate_expert_counts", "counts");
  kernels::accumulate_expert_counts(i32(ids), ids.numel(), counts.numel(),
                                    static_cast<int64_t*>(counts.data), stream_);
}

void CudaOps::pack_dispatch(const Tensor& ids, const Tensor& weights, int64_t first,
                            int64_t last, int64_t expert_set_size, int64_t expert_shards,
                            int64_t capacity, Tensor& rows, Tensor& experts, Tensor& scales) {
  expect(ids, DType::I32, "pack_dispatch", "ids");
  expect(weights, DType::F32, "pack_dispatch", "weights");
  expect(rows, DType::I32, "pack_dispatch", "rows");
  expect(experts, DType::I32, "pack_dispatch", "experts");
  expect(scales, DType::F32, "pack_dispatch", "scales");
  expect_same_shape(ids, weights, "pack_dispatch");
  const int64_t entries = rows.numel(), k = ids.numel() > 0 ? ids.cols() : 1;
  expect_numel(experts, entries, "pack_dispatch", "experts");
  expect_numel(scales, entries, "pack_dispatch", "scales");
  MOETRON_CHECK(expert_set_size > 0 && expert_shards > 0 && capacity > 0 && entries % capacity == 0,
                "pack_dispatch: " << entries << " entries are not whole destinations of capacity "
                                  << capacity);
  MOETRON_CHECK(0 <= first && first <= last && last * k <= ids.numel(),
                "pack_dispatch: tokens [" << first << ", " << last << ") outside ids "
                                          << ids.describe());
  kernels::pack_dispatch(i32(ids), f32(weights), k, first, last, expert_set_size, expert_shards,
                         capacity, entries / capacity, i32(rows), i32(experts), f32(scales),
                         stream_);
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

void CudaOps::sample_rows(const Tensor& logits, const std::vector<SamplingParams>& params,
                          const std::vector<uint64_t>& steps, Tensor& ids) {
  expect(logits, DType::F32, "sample_rows", "logits");
  expect(ids, DType::I32, "sample_rows", "ids");
  const int64_t rows = logits.rows(), vocab = logits.cols();
  expect_numel(ids, rows, "sample_rows", "ids");
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
  kernels::sample_rows(f32(logits), rows, vocab,
                       static_cast<const radix::RowParams*>(device_params.data), i32(ids),
                       stream_);
}

std::unique_ptr<Ops> make_cuda_ops(int device, size_t arena_bytes) {
  return std::make_unique<CudaOps>(device, arena_bytes);
}

}  // namespace moetron
