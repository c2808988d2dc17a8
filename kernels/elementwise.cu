// Elementwise and per-row kernels of the dense path: residual adds, clamps, dtype conversions,
// bias, SwiGLU activation, and the sigmoid-gated add of qwen2_moe's shared expert.
#include <cuda_fp16.h>

#include "common.cuh"

namespace moetron {
namespace kernels {
namespace {

constexpr int kThreads = 256;

// Runs op(i) for every i in [0, n) step VEC over a grid-stride loop; the callers' kernels only
// say what happens to one vector of elements.
template <int VEC, typename Op>
__device__ __forceinline__ void for_each_vector(int64_t n, Op op) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x * VEC;
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * VEC; i < n;
       i += stride)
    op(i);
}

template <int VEC>
__global__ void add_kernel(bf16* acc, const bf16* __restrict__ x, int64_t n) {
  pdl_enter();  // first: see common.cuh
  for_each_vector<VEC>(n, [&](int64_t i) {
    float a[VEC], b[VEC];
    load_bf16<VEC>(acc + i, a);
    load_bf16<VEC>(x + i, b);
#pragma unroll
    for (int j = 0; j < VEC; ++j) a[j] += b[j];
    store_bf16<VEC>(acc + i, a);
  });
}

template <int VEC>
__global__ void clamp_kernel(bf16* x, int64_t n, float limit) {
  pdl_enter();  // first: see common.cuh
  for_each_vector<VEC>(n, [&](int64_t i) {
    float a[VEC];
    load_bf16<VEC>(x + i, a);
#pragma unroll
    for (int j = 0; j < VEC; ++j) a[j] = fminf(fmaxf(a[j], -limit), limit);
    store_bf16<VEC>(x + i, a);
  });
}

// The vector path stores 16 bytes at a time: scalar stores 32 bytes apart across a warp (8 to a
// sector, each its own instruction) held the logits' conversion to ~0.5 TB/s (ncu, H200,
// fifteenth session: 103 us for 256 rows of a 50k vocabulary).
template <int VEC>
__global__ void bf16_to_float_kernel(const bf16* __restrict__ x, int64_t n, float* out) {
  pdl_enter();  // first: see common.cuh
  for_each_vector<VEC>(n, [&](int64_t i) {
    float a[VEC];
    load_bf16<VEC>(x + i, a);
    if constexpr (VEC % 4 == 0) {
#pragma unroll
      for (int j = 0; j < VEC; j += 4)
        *reinterpret_cast<float4*>(out + i + j) = make_float4(a[j], a[j + 1], a[j + 2], a[j + 3]);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) out[i + j] = a[j];
    }
  });
}

// Conversions into bf16 of weights at upload (F32 or F16 sources), element by element.
template <typename T>
__global__ void to_bf16_kernel(const T* __restrict__ x, int64_t n, bf16* out) {
  pdl_enter();  // first: see common.cuh
  for_each_vector<1>(n, [&](int64_t i) { out[i] = __float2bfloat16(as_float(x[i])); });
}

template <int VEC>
__global__ void add_bias_kernel(bf16* out, const bf16* __restrict__ bias, int64_t n,
                                int64_t cols) {
  pdl_enter();  // first: see common.cuh
  for_each_vector<VEC>(n, [&](int64_t i) {
    float a[VEC], b[VEC];
    load_bf16<VEC>(out + i, a);
    load_bf16<VEC>(bias + i % cols, b);  // VEC divides cols: a vector never spans two rows
#pragma unroll
    for (int j = 0; j < VEC; ++j) a[j] += b[j];
    store_bf16<VEC>(out + i, a);
  });
}

template <int VEC>
__global__ void silu_mul_kernel(const bf16* __restrict__ gate_up, int64_t n, int64_t inter,
                                bf16* __restrict__ out) {
  pdl_enter();  // first: see common.cuh
  for_each_vector<VEC>(n, [&](int64_t i) {
    const int64_t r = i / inter, c = i % inter;
    float g[VEC], u[VEC];
    load_bf16<VEC>(gate_up + r * 2 * inter + c, g);
    load_bf16<VEC>(gate_up + r * 2 * inter + inter + c, u);
#pragma unroll
    for (int j = 0; j < VEC; ++j) g[j] = g[j] / (1.0f + __expf(-g[j])) * u[j];
    store_bf16<VEC>(out + i, g);
  });
}

// One block per row: the gate is a dot product over the row, then a scaled add.
template <int VEC>
__global__ void add_sigmoid_gated_kernel(bf16* acc, const bf16* __restrict__ x,
                                         const bf16* __restrict__ gate_w,
                                         const bf16* __restrict__ y, int64_t cols) {
  pdl_enter();  // first: see common.cuh
  const int64_t r = blockIdx.x;
  float dot = 0.0f;
  for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
    float a[VEC], b[VEC];
    load_bf16<VEC>(x + r * cols + c, a);
    load_bf16<VEC>(gate_w + c, b);
#pragma unroll
    for (int j = 0; j < VEC; ++j) dot += a[j] * b[j];
  }
  const float gate = 1.0f / (1.0f + __expf(-block_sum(dot)));
  for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
    float a[VEC], b[VEC];
    load_bf16<VEC>(acc + r * cols + c, a);
    load_bf16<VEC>(y + r * cols + c, b);
#pragma unroll
    for (int j = 0; j < VEC; ++j) a[j] += gate * b[j];
    store_bf16<VEC>(acc + r * cols + c, a);
  }
}

// Launches kernel<8> when n and every pointer allow 16-byte vectors, else kernel<1>.
#define LAUNCH_VECTORIZED(kernel, n, vec8_ok, ...)                                           \
  do {                                                                                       \
    if (vec8_ok)                                                                             \
      launch(kernel<8>, grid_for(ceil_div(n, 8), kThreads), kThreads, 0, stream, __VA_ARGS__);   \
    else                                                                                     \
      launch(kernel<1>, grid_for(n, kThreads), kThreads, 0, stream, __VA_ARGS__);                \
  } while (0)

}  // namespace

void add_inplace(bf16* acc, const bf16* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  LAUNCH_VECTORIZED(add_kernel, n, n % 8 == 0 && aligned16(acc) && aligned16(x), acc, x, n);
}

void clamp_inplace(bf16* x, int64_t n, float limit, cudaStream_t stream) {
  if (n == 0) return;
  LAUNCH_VECTORIZED(clamp_kernel, n, n % 8 == 0 && aligned16(x), x, n, limit);
}

void bf16_to_float(const bf16* x, int64_t n, float* out, cudaStream_t stream) {
  if (n == 0) return;
  LAUNCH_VECTORIZED(bf16_to_float_kernel, n, n % 8 == 0 && aligned16(x) && aligned16(out), x, n, out);
}

void float_to_bf16(const float* x, int64_t n, bf16* out, cudaStream_t stream) {
  if (n == 0) return;
  launch(to_bf16_kernel<float>, grid_for(n, kThreads), kThreads, 0, stream, x, n, out);
}

void half_to_bf16(const __half* x, int64_t n, bf16* out, cudaStream_t stream) {
  if (n == 0) return;
  launch(to_bf16_kernel<__half>, grid_for(n, kThreads), kThreads, 0, stream, x, n, out);
}

void add_bias_rows(bf16* out, const bf16* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  LAUNCH_VECTORIZED(add_bias_kernel, n, cols % 8 == 0 && aligned16(out) && aligned16(bias), out,
                    bias, n, cols);
}

void silu_mul(const bf16* gate_up, int64_t rows, int64_t inter, bf16* out, cudaStream_t stream) {
  const int64_t n = rows * inter;
  if (n == 0) return;
  LAUNCH_VECTORIZED(silu_mul_kernel, n, inter % 8 == 0 && aligned16(gate_up) && aligned16(out),
                    gate_up, n, inter, out);
}

void add_sigmoid_gated(bf16* acc, const bf16* x, const bf16* gate_w, const bf16* y, int64_t rows,
                       int64_t cols, cudaStream_t stream) {
  if (rows == 0) return;
  const bool vec8 = cols % 8 == 0 && aligned16(acc) && aligned16(x) && aligned16(gate_w) &&
                    aligned16(y);
  if (vec8)
    launch(add_sigmoid_gated_kernel<8>, rows, kThreads, 0, stream, acc, x, gate_w, y, cols);
  else
    launch(add_sigmoid_gated_kernel<1>, rows, kThreads, 0, stream, acc, x, gate_w, y, cols);
}

}  // namespace kernels
}  // namespace moetron
