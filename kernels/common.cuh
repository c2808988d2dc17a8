// Device helpers shared by the kernels: vector loads of bf16 as fp32, warp and block
// reductions, launch geometry.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cstdint>

#include "moetron/kernels.hpp"

namespace moetron {
namespace kernels {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid size for a grid-stride loop over n items of `threads` each: enough blocks to fill the
// GPU several times over, never more than the work needs.
inline unsigned grid_for(int64_t n, int threads) {
  int64_t blocks = ceil_div(n, threads);
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

// True when p is aligned for 16-byte vector access.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// VEC consecutive bf16 to and from fp32, in one access of 2 * VEC bytes (VEC = 2, 4, 8; the
// address aligned to it) or element by element (any other VEC).
template <int VEC>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&f)[VEC]) {
  if constexpr (VEC == 8) {
    uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 v = __bfloat1622float2(h[i]);
      f[2 * i] = v.x;
      f[2 * i + 1] = v.y;
    }
  } else if constexpr (VEC == 4) {
    uint2 raw = *reinterpret_cast<const uint2*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
    float2 a = __bfloat1622float2(h[0]), b = __bfloat1622float2(h[1]);
    f[0] = a.x;
    f[1] = a.y;
    f[2] = b.x;
    f[3] = b.y;
  } else if constexpr (VEC == 2) {
    float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    f[0] = a.x;
    f[1] = a.y;
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) f[i] = __bfloat162float(p[i]);
  }
}

template <int VEC>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&f)[VEC]) {
  if constexpr (VEC == 8) {
    uint4 raw;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4*>(p) = raw;
  } else if constexpr (VEC == 4) {
    uint2 raw;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
    h[0] = __floats2bfloat162_rn(f[0], f[1]);
    h[1] = __floats2bfloat162_rn(f[2], f[3]);
    *reinterpret_cast<uint2*>(p) = raw;
  } else if constexpr (VEC == 2) {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(f[0], f[1]);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) p[i] = __float2bfloat16(f[i]);
  }
}

// One element of any stored float type as fp32.
__device__ __forceinline__ float as_float(float v) { return v; }
__device__ __forceinline__ float as_float(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float as_float(__half v) { return __half2float(v); }

// op over the warp by an xor butterfly: every lane ends with the same bits (op commutes), in
// the same order of operations on every run.
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct FmaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, SumOp{}); }
__device__ __forceinline__ float warp_max(float v) { return warp_reduce(v, FmaxOp{}); }

// op over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result,
// the same bits on every run. identity fills the lanes past the last warp.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  v = lane < warps ? partial[lane] : identity;
  return warp_reduce(v, op);
}

__device__ __forceinline__ float block_sum(float v) { return block_reduce(v, SumOp{}, 0.0f); }

// The larger (value, index) pair; ties go to the lower index.
__device__ __forceinline__ void argmax_merge(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, o);
    int oi = __shfl_xor_sync(0xffffffffu, i, o);
    argmax_merge(v, i, ov, oi);
  }
}


// ---- programmatic dependent launch (PDL, sm_90+) ---------------------------------------------
// Every kernel here is launched through launch() below, which lets it start while the kernel
// before it on the stream is still finishing: its blocks are scheduled and run up to
// pdl_enter(), which waits until the previous grid has completed and its writes are visible.
// In a decode step of a few hundred short kernels this hides most of the launch and ramp-up
// time between them, also inside a CUDA graph. Each kernel MUST call pdl_enter() before it
// reads or writes anything another kernel touches; calling it first thing is the rule here.
// pdl_enter() also lets the next kernel start its own launch: that one waits in its own
// pdl_enter() for this grid to complete, so the order of effects is that of the stream.
// Kernels launched otherwise (cuBLAS) neither trigger early nor wait: ordinary stream order.
// Off before sm_90 (the instructions do not exist there) and with MOETRON_PDL=0.
//
// The one exception, dense_gemv.cu, uses the two halves apart: it reads its weights (which no
// kernel writes) before pdl_wait(), and calls pdl_trigger() only after its loads, which keeps
// a step's chain of early launches short (the measurements are in that file). Waiting before
// triggering in every kernel was measured too, and was slower (perf/NOTES.md, sixteenth session).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_enter() {
  pdl_trigger();
  pdl_wait();
}


// pdl_enabled() (kernels.hpp): whether launches on the current device may overlap their
// predecessor (see pdl_enter).

// Lets `kernel` use `bytes` of dynamic shared memory (past the 48 KiB default) on the current
// device. The attribute stays set, so the driver is asked once per kernel, device and size: set
// before every launch, it cost an eager step's host a driver call a launch. Host-side; allowed
// while a graph is being captured.
void opt_in_dynamic_smem(const void* kernel, size_t bytes);
template <typename... Params>
void opt_in_dynamic_smem(void (*kernel)(Params...), size_t bytes) {
  opt_in_dynamic_smem(reinterpret_cast<const void*>(kernel), bytes);
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
            cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = 1;
  CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...));
}

}  // namespace kernels
}  // namespace moetron
