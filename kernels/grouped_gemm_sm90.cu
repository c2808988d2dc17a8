// Expert GEMMs on Hopper (sm_90a): warpgroup MMA (wgmma) fed by the tensor memory accelerator
// (TMA), one 128-row tile of one expert per block, for the same tile table (MoeRouting::tiles,
// kLargeTileRows rows) and the same two products as grouped_gemm.cu's large tiles:
// act = silu(x G^T) * (x U^T) and y = act D^T. Under MOETRON_EXPERT_GEMM=wgmma it runs the
// prefill-sized calls and the decode calls of 25 rows an expert or more
// (expert_call_by_hopper_gemms).
//
// Why: the portable WMMA tiles reach about a quarter of the bf16 GEMM rate, and the per-expert
// cuBLASLt calls that replace them at prefill cost the host ~20-30 us an expert and a stream sync
// a layer (expert_paths.hpp). Here one launch does every expert on the device, so it also runs in
// a captured graph; at decode sizes one tile an expert streams its weights once.
//
// A block: one producer warpgroup, of which one thread issues the TMA loads of each k step (a
// 128 x 64 slice of the tile's input rows, and 128 x 64 of weights: 128 output columns, or 64
// gate and the 64 matching up columns for SwiGLU) into a ring of kStages shared-memory stages;
// two consumer warpgroups, each 64 rows x 128 columns of fp32 accumulators in registers, run
// wgmma m64n128k16 on each stage and hand it back. Stages are guarded by mbarriers: `full` (the
// TMA's bytes have landed) and `empty` (both consumers are done reading). The tiles are stored
// K-major with the 128-byte swizzle that TMA writes and wgmma reads (one 64-element bf16 row of k
// is one 128-byte swizzle span; 8 rows make a 1,024-byte atom). Rows of a tile past its expert's
// rows are computed (they hold the next expert's rows, or TMA's zeros past the buffer) and not
// stored; weight rows past n_dim only feed columns that are not stored either.
//
// Off sm_90a (and in the host pass) the kernel body is empty: grouped_gemm_sm90_available() says
// whether the current device runs the sm_90a image, and CudaOps selects this path only then.
#include <cuda.h>
#include <cudaTypedefs.h>

#include <mutex>

#include "common.cuh"
#include "moetron/backend/hopper_gemm_layout.hpp"
#include "moetron/core/error.hpp"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOETRON_SM90A_DEVICE 1
#endif

namespace moetron {
namespace kernels {
namespace {

constexpr int kBM = 128;  // a block's rows: the routing's large tiles
constexpr int kBN = 128;  // weight rows a stage holds (SwiGLU: 64 gate rows and their 64 up rows)
constexpr int kBK = 64;   // k a stage holds: 64 bf16, one 128-byte swizzle span a row
constexpr int kStages = 4;
constexpr int kConsumers = 2;  // warpgroups of 64 rows
constexpr int kWarpgroup = 128;
constexpr int kThreads = kWarpgroup * (1 + kConsumers);
[[maybe_unused]] constexpr int kAccumulators = kBN / 2;  // m64n128 fp32 over a warpgroup: 64 a thread
static_assert(kBM == kLargeTileRows, "a block computes one of the routing's large tiles");
static_assert(kBM == 64 * kConsumers, "each consumer warpgroup takes 64 rows");

struct alignas(1024) Stage {  // 1,024-byte aligned: the swizzle pattern repeats every 1,024 bytes
  bf16 a[kBM * kBK];
  bf16 b[kBN * kBK];
};
struct Shared {
  Stage stage[kStages];
  uint64_t full[kStages];
  uint64_t empty[kStages];
};
constexpr size_t kSmemBytes = sizeof(Shared) + 1024;  // + room to align the base

#ifdef MOETRON_SM90A_DEVICE
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(arrivals));
}
// The initialised barriers made visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_expect_bytes(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(shared_address(bar)), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(shared_address(bar)) : "memory");
}
// Waits until the barrier's phase of this parity has completed. A phase that never completes is
// a bug (a load that was never issued, a count that does not match); rather than hang the GPU and
// every rank waiting on it, the block traps after ~10 s of waiting, and the launch fails with an
// error the engine reports.
constexpr long long kHangCycles = 20'000'000'000LL;  // ~10 s at 2 GHz
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  long long since = 0;
  for (;;) {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(shared_address(bar)), "r"(parity)
        : "memory");
    if (done) return;
    const long long now = clock64();
    if (since == 0) since = now;
    if (now - since > kHangCycles) __trap();
  }
}

// TMA: the box of `map` at (k, row) into shared memory; its bytes complete a transaction on bar.
__device__ __forceinline__ void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int k, int row) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], "
      "[%2];\n" ::"r"(shared_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(shared_address(bar)), "r"(k), "r"(row)
      : "memory");
}

// A wgmma operand in shared memory (hopper_smem_descriptor): moving along k inside the 128-byte
// span moves the start address.
__device__ __forceinline__ uint64_t smem_operand(const bf16* p) { return hopper_smem_descriptor(shared_address(p)); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }

// d (64 rows x 128 columns over the warpgroup) += A (64 x 16) . B (128 x 16)^T, both K-major.
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[kAccumulators], uint64_t a, uint64_t b) {
#define MOETRON_D8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), \
                      "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
  asm volatile(
      "{\n"
      ".reg .pred accumulate;\n"
      "setp.ne.b32 accumulate, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, accumulate, 1, 1, 0, 0;\n"
      "}\n"
      : MOETRON_D8(0), MOETRON_D8(8), MOETRON_D8(16), MOETRON_D8(24), MOETRON_D8(32), MOETRON_D8(40),
        MOETRON_D8(48), MOETRON_D8(56)
      : "l"(a), "l"(b), "r"(1));
#undef MOETRON_D8
}

// Pins the accumulators in place around the asynchronous MMAs: the compiler sees them read and
// written here, so it neither touches them while a wgmma is in flight nor moves the epilogue's
// reads above the wait.
__device__ __forceinline__ void fence_accumulators(float (&d)[kAccumulators]) {
#pragma unroll
  for (int i = 0; i < kAccumulators; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }
#endif  // MOETRON_SM90A_DEVICE

// c[row0 + r, n0 + j] for r < the tile's rows and n0 + j < n_dim, n0 = the block's column block
// x (kBN, or kBN / 2 for SwiGLU); one block per (row tile, column block), in hopper_block_work's
// order. x_map: the permuted input rows [max_rows, k_dim], box 64 x 128; w_map: all local
// experts' weight rows [experts x w_rows, k_dim], box 64 x 128 (64 x 64 for SwiGLU: gate rows
// e x w_rows + n0 ... and up rows e x w_rows + n_dim + n0 ...).
template <bool kSwiGLU>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_grouped_gemm_kernel(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                               const int4* __restrict__ tiles, int max_tiles, int k_dim, int n_dim, int w_rows,
                               bf16* __restrict__ c) {
  pdl_enter();  // first: see common.cuh
#ifdef MOETRON_SM90A_DEVICE
  extern __shared__ unsigned char smem_raw[];
  const uint32_t misalignment = shared_address(smem_raw) & 1023u;
  Shared& sh = *reinterpret_cast<Shared*>(smem_raw + ((1024u - misalignment) & 1023u));

  constexpr int kColumns = kSwiGLU ? kBN / 2 : kBN;  // output columns a block
  const HopperBlockWork at = hopper_block_work(blockIdx.x, max_tiles, (n_dim + kColumns - 1) / kColumns);
  const int4 work = tiles[at.tile];  // {expert, first row, rows, -}
  const int e = work.x, row0 = work.y, rows = work.z;
  if (rows == 0) return;  // past the last tile: the whole block, before any barrier
  const int n0 = at.column_block * kColumns;
  const int k_steps = (k_dim + kBK - 1) / kBK;
  const int warpgroup = threadIdx.x / kWarpgroup;

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&sh.full[s], 1);
      mbar_init(&sh.empty[s], kConsumers);
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (warpgroup == 0) {  // the producer: one thread issues every load
    if (threadIdx.x != 0) return;
    const int w_row = e * w_rows + n0;
    for (int step = 0; step < k_steps; ++step) {
      const int s = step % kStages;
      if (step >= kStages) mbar_wait(&sh.empty[s], ((step / kStages) - 1) & 1);
      mbar_expect_bytes(&sh.full[s], sizeof(Stage));
      const int k = step * kBK;
      tma_load(sh.stage[s].a, &x_map, &sh.full[s], k, row0);
      if constexpr (kSwiGLU) {
        tma_load(sh.stage[s].b, &w_map, &sh.full[s], k, w_row);
        tma_load(sh.stage[s].b + (kBN / 2) * kBK, &w_map, &sh.full[s], k, w_row + n_dim);
      } else {
        tma_load(sh.stage[s].b, &w_map, &sh.full[s], k, w_row);
      }
    }
    return;
  }

  const int consumer = warpgroup - 1;  // rows 64 x consumer ... of the tile
  float d[kAccumulators];
#pragma unroll
  for (int i = 0; i < kAccumulators; ++i) d[i] = 0.0f;
  for (int step = 0; step < k_steps; ++step) {
    const int s = step % kStages;
    mbar_wait(&sh.full[s], (step / kStages) & 1);
    const bf16* a = sh.stage[s].a + consumer * 64 * kBK;
    const bf16* b = sh.stage[s].b;
    fence_accumulators(d);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) wgmma_m64n128k16(d, smem_operand(a + kk), smem_operand(b + kk));
    wgmma_commit();
    wgmma_wait_all();  // this stage is read: hand it back
    fence_accumulators(d);
    if (threadIdx.x % kWarpgroup == 0) mbar_arrive(&sh.empty[s]);
  }

  // Each thread stores pairs of columns (d[4i + 2 half] and the next: hopper_accumulator_at).
  // SwiGLU's up column j sits 64 columns (8 i-steps) after gate column j, in the same thread.
  const int thread = threadIdx.x % kWarpgroup;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = consumer * 64 + hopper_accumulator_at(thread, 0, half, 0).row;
    if (r >= rows) continue;
    bf16* out = c + static_cast<int64_t>(row0 + r) * n_dim + n0;
#pragma unroll
    for (int i = 0; i < kColumns / 8; ++i) {
      const int col = hopper_accumulator_at(thread, i, half, 0).col;
      if (n0 + col >= n_dim) continue;  // n_dim is a multiple of 8: col + 1 is in too
      float v[2] = {d[4 * i + 2 * half], d[4 * i + 2 * half + 1]};
      if constexpr (kSwiGLU) {
        v[0] = silu(v[0]) * d[4 * (i + 8) + 2 * half];
        v[1] = silu(v[1]) * d[4 * (i + 8) + 2 * half + 1];
      }
      store_bf16<2>(out + col, v);
    }
  }
#else
  (void)x_map, (void)w_map, (void)tiles, (void)max_tiles, (void)k_dim, (void)n_dim, (void)w_rows, (void)c;
#endif
}

// Writes 1 where the sm_90a image runs (the device is 9.0 and this binary carries one).
__global__ void sm90a_probe_kernel(int* runs) {
  pdl_enter();  // first: see common.cuh
#ifdef MOETRON_SM90A_DEVICE
  *runs = 1;
#else
  *runs = 0;
#endif
}

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
    MOETRON_CHECK(found == cudaDriverEntryPointSuccess && fn != nullptr,
                  "the CUDA driver has no cuTensorMapEncodeTiled (the Hopper expert GEMMs need a 12.0+ driver)");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// A row-major bf16 matrix [rows, cols] read in boxes of kBK columns x box_rows rows, 128-byte
// swizzled; reads past its edges give zeros.
CUtensorMap row_major_map(const bf16* base, int64_t rows, int64_t cols, int box_rows) {
  MOETRON_CHECK(aligned16(base) && cols % 8 == 0,
                "Hopper expert GEMM: operands must be 16-byte aligned with rows of a multiple of 8 elements (got "
                    << cols << ")");
  CUtensorMap map;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t row_stride[1] = {static_cast<cuuint64_t>(cols) * sizeof(bf16)};
  const cuuint32_t box[2] = {kBK, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_stride[2] = {1, 1};
  const CUresult status = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16*>(base), dims, row_stride, box, element_stride,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  MOETRON_CHECK(status == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed (error " << static_cast<int>(status)
                                                                                 << ") for a [" << rows << ", "
                                                                                 << cols << "] bf16 operand");
  return map;
}

template <bool kSwiGLU>
void launch_hopper(const bf16* x, const bf16* w, const MoeRouting& routing, int64_t num_local, int64_t max_rows,
                   int64_t k_dim, int64_t n_dim, int64_t w_rows, bf16* c, cudaStream_t stream) {
  MOETRON_ASSERT(routing.max_tiles == grouped_gemm_max_tiles(kBM, max_rows, num_local));
  if (routing.max_tiles == 0) return;
  MOETRON_CHECK(num_local * w_rows <= INT32_MAX && max_rows <= INT32_MAX,
                "Hopper expert GEMM: " << num_local << " experts x " << w_rows << " weight rows exceed int32 coordinates");
  const CUtensorMap x_map = row_major_map(x, max_rows, k_dim, kBM);
  const CUtensorMap w_map = row_major_map(w, num_local * w_rows, k_dim, kSwiGLU ? kBN / 2 : kBN);
  constexpr int kColumns = kSwiGLU ? kBN / 2 : kBN;
  const int64_t blocks = routing.max_tiles * ceil_div(n_dim, kColumns);
  MOETRON_CHECK(blocks <= INT32_MAX, "Hopper expert GEMM: " << blocks << " blocks exceed one launch");
  opt_in_dynamic_smem(hopper_grouped_gemm_kernel<kSwiGLU>, kSmemBytes);
  launch(hopper_grouped_gemm_kernel<kSwiGLU>, dim3(static_cast<unsigned>(blocks)), dim3(kThreads), kSmemBytes, stream,
         x_map, w_map, routing.tiles, static_cast<int>(routing.max_tiles), static_cast<int>(k_dim),
         static_cast<int>(n_dim), static_cast<int>(w_rows), c);
}

// Whether `device` (the current one) runs the sm_90a image: a probe launch.
bool probe_sm90a(int device) {
  int major = 0, minor = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major != 9 || minor != 0) return false;
  cudaFuncAttributes attributes{};
  if (cudaFuncGetAttributes(&attributes, sm90a_probe_kernel) != cudaSuccess) {
    (void)cudaGetLastError();  // no image of this binary runs on the device
    return false;
  }
  int* runs = nullptr;
  CUDA_CHECK(cudaMalloc(&runs, sizeof(int)));
  CUDA_CHECK(cudaMemset(runs, 0, sizeof(int)));
  launch(sm90a_probe_kernel, dim3(1), dim3(1), 0, nullptr, runs);
  int answer = 0;
  CUDA_CHECK(cudaMemcpy(&answer, runs, sizeof(int), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaFree(runs));
  // The driver's encoder is looked up here, once, rather than at the first launch, which may be
  // inside a graph capture; a driver without it fails here with its message.
  if (answer == 1) (void)tensor_map_encoder();
  return answer == 1;
}

}  // namespace

// Probed once a device (the answer cannot change), since callers ask each time they pick a path.
bool grouped_gemm_sm90_available() {
  constexpr int kMaxDevices = 64;
  static std::mutex mutex;
  static int known[kMaxDevices] = {};  // 0: not probed yet, 1: runs, -1: does not
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices) return probe_sm90a(device);
  const std::lock_guard<std::mutex> lock(mutex);
  if (known[device] == 0) known[device] = probe_sm90a(device) ? 1 : -1;
  return known[device] == 1;
}

void grouped_gemm_sm90_swiglu(const bf16* x_perm, const bf16* gate_up, const MoeRouting& routing, int64_t num_local,
                              int64_t max_rows, int64_t hidden, int64_t inter, bf16* act, cudaStream_t stream) {
  launch_hopper<true>(x_perm, gate_up, routing, num_local, max_rows, hidden, inter, 2 * inter, act, stream);
}

void grouped_gemm_sm90_down(const bf16* act, const bf16* down, const MoeRouting& routing, int64_t num_local,
                            int64_t max_rows, int64_t inter, int64_t hidden, bf16* y, cudaStream_t stream) {
  launch_hopper<false>(act, down, routing, num_local, max_rows, inter, hidden, hidden, y, stream);
}

}  // namespace kernels
}  // namespace moetron
