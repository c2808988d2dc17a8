// Expert permutation on the device: count the slots of each local expert, prefix-sum the counts
// into row and tile offsets, scatter token rows into expert-contiguous order, and after the
// expert GEMMs gather them back with the routing weights. No step needs the host to know how
// many tokens an expert got.
#include "common.cuh"
#include "dispatch.cuh"

namespace moetron {
namespace kernels {
namespace {

constexpr int kScanThreads = 1024;

__global__ void count_slots_kernel(const int32_t* __restrict__ ids, int64_t num_slots,
                                   int64_t first_expert, int64_t num_local, int32_t* counts,
                                   int32_t* slot_rank) {
  pdl_enter();  // first: see common.cuh
  for (int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; s < num_slots;
       s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = ids[s] - first_expert;
    slot_rank[s] = (e >= 0 && e < num_local) ? atomicAdd(&counts[e], 1) : -1;
  }
}

// Offsets of one chunk of kScanThreads experts (thread i: expert base + i, with `count` rows):
// a Hillis-Steele scan of rows and tiles in shared memory, carried across chunks, and each
// expert's entries of the tile table. Every thread of the block calls it.
__device__ void scan_offsets_chunk(int count, int base, int num_local, int tile_rows,
                                   int& row_carry, int& tile_carry, int32_t* offsets,
                                   int32_t* tile_offsets, int4* tiles) {
  __shared__ int rows_s[kScanThreads], tiles_s[kScanThreads];
  const int e = base + threadIdx.x;
  const int my_tiles = (count + tile_rows - 1) / tile_rows;
  rows_s[threadIdx.x] = count;
  tiles_s[threadIdx.x] = my_tiles;
  __syncthreads();
  for (int step = 1; step < kScanThreads; step <<= 1) {
    int r = 0, t = 0;
    if (threadIdx.x >= step) {
      r = rows_s[threadIdx.x - step];
      t = tiles_s[threadIdx.x - step];
    }
    __syncthreads();
    rows_s[threadIdx.x] += r;
    tiles_s[threadIdx.x] += t;
    __syncthreads();
  }
  // Inclusive sums: expert e ends where e + 1 begins.
  if (e < num_local) {
    offsets[e + 1] = row_carry + rows_s[threadIdx.x];
    tile_offsets[e + 1] = tile_carry + tiles_s[threadIdx.x];
    const int first_row = row_carry + rows_s[threadIdx.x] - count;
    const int first_tile = tile_carry + tiles_s[threadIdx.x] - my_tiles;
    for (int j = 0; j < my_tiles; ++j)
      tiles[first_tile + j] =
          make_int4(e, first_row + j * tile_rows, min(tile_rows, count - j * tile_rows), 0);
  }
  if (base == 0 && threadIdx.x == 0) {
    offsets[0] = 0;
    tile_offsets[0] = 0;
  }
  row_carry += rows_s[kScanThreads - 1];
  tile_carry += tiles_s[kScanThreads - 1];
  __syncthreads();  // the shared sums are read above before the next chunk overwrites them
}

// Tile table entries past the last tile: no work (the GEMM grids cover max_tiles tiles).
__device__ void clear_tiles(int first, int64_t max_tiles, int4* tiles) {
  for (int64_t t = first + threadIdx.x; t < max_tiles; t += blockDim.x)
    tiles[t] = make_int4(0, 0, 0, 0);
}

// Exclusive prefix sums of the counts (rows) and of their tile counts, and the tile table, in
// one block.
__global__ void scan_offsets_kernel(const int32_t* __restrict__ counts, int num_local,
                                    int tile_rows, int32_t* offsets, int32_t* tile_offsets,
                                    int4* tiles, int64_t max_tiles) {
  pdl_enter();  // first: see common.cuh
  int row_carry = 0, tile_carry = 0;
  for (int base = 0; base < num_local; base += kScanThreads) {
    const int e = base + threadIdx.x;
    scan_offsets_chunk(e < num_local ? counts[e] : 0, base, num_local, tile_rows, row_carry,
                       tile_carry, offsets, tile_offsets, tiles);
  }
  clear_tiles(tile_carry, max_tiles, tiles);
}

// The whole routing in one block, for up to kScanThreads local experts and few slots (decode):
// counts and ranks with shared-memory atomics, the scan, then each slot's permuted row and each
// row's token (what moe_permute would record), so the GEMMs can read the tokens in place.
// Saves the memset and two launches.
__global__ void route_one_block_kernel(const int32_t* __restrict__ ids, int64_t num_slots,
                                       int64_t k, int64_t first_expert, int num_local,
                                       int tile_rows, MoeRouting routing) {
  pdl_enter();  // first: see common.cuh
  __shared__ int counts_s[kScanThreads];
  counts_s[threadIdx.x] = 0;
  __syncthreads();
  for (int64_t s = threadIdx.x; s < num_slots; s += kScanThreads) {
    const int32_t id = ids[s];
    const int64_t e = id - first_expert;
    routing.slot_rank[s] = (e >= 0 && e < num_local) ? atomicAdd(&counts_s[e], 1) : -1;
    if (routing.served != nullptr && id >= 0 && id < routing.served_experts)
      atomicAdd(reinterpret_cast<unsigned long long*>(routing.served + id), 1ull);
  }
  __syncthreads();
  const int count = threadIdx.x < num_local ? counts_s[threadIdx.x] : 0;
  if (threadIdx.x < num_local) routing.counts[threadIdx.x] = count;
  int row_carry = 0, tile_carry = 0;
  scan_offsets_chunk(count, 0, num_local, tile_rows, row_carry, tile_carry, routing.offsets,
                     routing.tile_offsets, routing.tiles);
  clear_tiles(tile_carry, routing.max_tiles, routing.tiles);
  // The scan's global writes (offsets) are visible to the whole block after the barrier.
  __syncthreads();
  for (int64_t s = threadIdx.x; s < num_slots; s += kScanThreads) {
    const int rank = routing.slot_rank[s];
    const int row = rank < 0 ? -1 : routing.offsets[ids[s] - first_expert] + rank;
    routing.row_of_slot[s] = row;
    if (row >= 0) routing.token_of_row[row] = static_cast<int32_t>(s / k);
  }
}

// One block per slot: records the slot's permuted row and copies its token's row there.
template <int VEC>
__global__ void permute_rows_kernel(const bf16* __restrict__ x, const int32_t* __restrict__ ids,
                                    int64_t k, int64_t hidden, int64_t first_expert,
                                    const int32_t* __restrict__ offsets,
                                    const int32_t* __restrict__ slot_rank,
                                    int32_t* __restrict__ row_of_slot, bf16* __restrict__ x_perm) {
  pdl_enter();  // first: see common.cuh
  const int64_t s = blockIdx.x;
  const int rank = slot_rank[s];
  const int64_t row = rank < 0 ? -1 : offsets[ids[s] - first_expert] + rank;
  if (threadIdx.x == 0) row_of_slot[s] = static_cast<int32_t>(row);
  if (row < 0) return;
  const bf16* src = x + (s / k) * hidden;
  bf16* dst = x_perm + row * hidden;
  for (int64_t c = threadIdx.x * VEC; c < hidden; c += blockDim.x * VEC) {
    float f[VEC];
    load_bf16<VEC>(src + c, f);
    store_bf16<VEC>(dst + c, f);
  }
}

// One block per token: the weighted sum of its local slots' expert outputs, in fp32.
template <int VEC>
__global__ void unpermute_combine_kernel(const bf16* __restrict__ y_perm,
                                         const int32_t* __restrict__ row_of_slot,
                                         const float* __restrict__ weights, int64_t k,
                                         int64_t hidden, bf16* __restrict__ out) {
  pdl_enter();  // first: see common.cuh
  const int64_t t = blockIdx.x;
  for (int64_t c = threadIdx.x * VEC; c < hidden; c += blockDim.x * VEC) {
    float acc[VEC] = {};
    for (int64_t j = 0; j < k; ++j) {
      const int64_t row = row_of_slot[t * k + j];
      if (row < 0) continue;
      const float w = weights[t * k + j];
      float y[VEC];
      load_bf16<VEC>(y_perm + row * hidden + c, y);
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[i] += w * y[i];
    }
    store_bf16<VEC>(out + t * hidden + c, acc);
  }
}

__global__ void accumulate_counts_kernel(const int32_t* __restrict__ ids, int64_t n,
                                         int64_t num_experts, unsigned long long* counts) {
  pdl_enter();  // first: see common.cuh
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = ids[i];
    if (e >= 0 && e < num_experts) atomicAdd(&counts[e], 1ull);
  }
}

// One thread per (layer, token, slot j, slot m): the CPU reference's loops, flattened. The
// diagonal (j == m) also counts the expert's slots.
__global__ void accumulate_routing_kernel(const int32_t* __restrict__ records, int64_t layers,
                                          int64_t rows, int64_t tokens, int64_t k,
                                          int64_t num_experts, unsigned long long* counts,
                                          unsigned long long* pairs) {
  pdl_enter();  // first: see common.cuh
  const int64_t per_layer = tokens * k * k, n = layers * per_layer;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t l = i / per_layer, r = i - l * per_layer;
    const int64_t t = r / (k * k), j = (r / k) % k, m = r % k;
    const int32_t* row = records + (l * rows + t) * k;
    const int64_t a = row[j], b = row[m];
    if (a < 0 || a >= num_experts || b < 0 || b >= num_experts) continue;
    atomicAdd(&pairs[(l * num_experts + a) * num_experts + b], 1ull);
    if (j == m) atomicAdd(&counts[l * num_experts + a], 1ull);
  }
}

__global__ void add_row_bias_f32_kernel(float* x, const float* __restrict__ bias, int64_t rows,
                                        int64_t cols) {
  pdl_enter();  // first: see common.cuh
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += bias[i % cols];
}

// One warp per destination (warp_pack, dispatch.cuh).
__global__ void pack_dispatch_kernel(const int32_t* __restrict__ ids,
                                     const float* __restrict__ weights, int64_t k, int64_t first,
                                     int64_t last, int64_t set_size, int64_t shards,
                                     int64_t capacity, int64_t destinations, int32_t* rows,
                                     int32_t* experts, float* scales) {
  pdl_enter();  // first: see common.cuh
  const int64_t d = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  if (d >= destinations) return;  // warp-uniform: blocks hold whole warps
  const int64_t base = d * capacity;
  warp_pack<true>(first * k, last * k, k, [ids](int64_t s) { return ids[s]; }, d / shards, set_size, capacity,
            weights, rows + base, experts + base, scales + base);
}

int row_copy_threads(int64_t cols, int vec) {
  const int64_t t = ceil_div(ceil_div(cols, vec), 32) * 32;
  return static_cast<int>(t < 32 ? 32 : (t > 256 ? 256 : t));
}

}  // namespace

// Up to this many slots one block routes them all (shared atomics); beyond, a grid counts them.
constexpr int64_t kOneBlockRouteMaxSlots = kExpertRouteOneBlockMaxSlots;  // expert_call_by_gemms reads it too
static_assert(kScanThreads == kExpertRouteOneBlockMaxExperts, "expert_paths.hpp: one routing block's experts");

bool moe_route(const int32_t* ids, int64_t num_tokens, int64_t k, int64_t first_expert,
               int64_t num_local, int tile_rows, const MoeRouting& routing, cudaStream_t stream) {
  const int64_t slots = num_tokens * k;
  if (num_local <= kScanThreads && slots <= kOneBlockRouteMaxSlots) {
    launch(route_one_block_kernel, 1, kScanThreads, 0, stream, ids, slots, k, first_expert,
           static_cast<int>(num_local), tile_rows, routing);
    return true;
  }
  if (routing.served != nullptr)
    accumulate_expert_counts(ids, slots, routing.served_experts, routing.served, stream);
  CUDA_CHECK(cudaMemsetAsync(routing.counts, 0, num_local * sizeof(int32_t), stream));
  if (slots > 0) {
    launch(count_slots_kernel, grid_for(slots, 256), 256, 0, stream, ids, slots, first_expert,
           num_local, routing.counts, routing.slot_rank);
  }
  launch(scan_offsets_kernel, 1, kScanThreads, 0, stream, routing.counts,
         static_cast<int>(num_local), tile_rows, routing.offsets, routing.tile_offsets,
         routing.tiles, routing.max_tiles);
  return false;
}

void accumulate_expert_counts(const int32_t* ids, int64_t n, int64_t num_experts,
                              int64_t* counts, cudaStream_t stream) {
  if (n == 0) return;
  static_assert(sizeof(unsigned long long) == sizeof(int64_t), "64-bit counters");
  launch(accumulate_counts_kernel, grid_for(n, 256), 256, 0, stream, ids, n, num_experts,
      reinterpret_cast<unsigned long long*>(counts));
}

void accumulate_routing(const int32_t* records, int64_t layers, int64_t rows, int64_t tokens,
                        int64_t k, int64_t num_experts, int64_t* counts, int64_t* pairs,
                        cudaStream_t stream) {
  const int64_t n = layers * tokens * k * k;
  if (n == 0) return;
  launch(accumulate_routing_kernel, grid_for(n, 256), 256, 0, stream, records, layers, rows,
         tokens, k, num_experts, reinterpret_cast<unsigned long long*>(counts),
         reinterpret_cast<unsigned long long*>(pairs));
}

void add_row_bias_f32(float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  launch(add_row_bias_f32_kernel, grid_for(n, 256), 256, 0, stream, x, bias, rows, cols);
}

void moe_permute(const bf16* x, const int32_t* ids, int64_t num_tokens, int64_t k,
                 int64_t hidden, int64_t first_expert, const MoeRouting& routing, bf16* x_perm,
                 cudaStream_t stream) {
  const int64_t slots = num_tokens * k;
  if (slots == 0) return;
  if (hidden % 8 == 0 && aligned16(x) && aligned16(x_perm))
    launch(permute_rows_kernel<8>, slots, row_copy_threads(hidden, 8), 0, stream, x, ids, k,
           hidden, first_expert, routing.offsets, routing.slot_rank, routing.row_of_slot, x_perm);
  else
    launch(permute_rows_kernel<1>, slots, row_copy_threads(hidden, 1), 0, stream, x, ids, k,
           hidden, first_expert, routing.offsets, routing.slot_rank, routing.row_of_slot, x_perm);
}

void moe_unpermute_combine(const bf16* y_perm, const int32_t* row_of_slot, const float* weights,
                           int64_t num_tokens, int64_t k, int64_t hidden, bf16* out,
                           cudaStream_t stream) {
  if (num_tokens == 0) return;
  if (hidden % 8 == 0 && aligned16(y_perm) && aligned16(out))
    launch(unpermute_combine_kernel<8>, num_tokens, row_copy_threads(hidden, 8), 0, stream, y_perm,
        row_of_slot, weights, k, hidden, out);
  else
    launch(unpermute_combine_kernel<1>, num_tokens, row_copy_threads(hidden, 1), 0, stream, y_perm,
        row_of_slot, weights, k, hidden, out);
}

void pack_dispatch(const int32_t* ids, const float* weights, int64_t k, int64_t first,
                   int64_t last, int64_t set_size, int64_t shards, int64_t capacity,
                   int64_t destinations, int32_t* rows, int32_t* experts, float* scales,
                   cudaStream_t stream) {
  if (destinations == 0 || capacity == 0) return;
  constexpr int kThreads = 256;  // 8 warps, one destination each
  const int64_t blocks = ceil_div(destinations * 32, static_cast<int64_t>(kThreads));
  launch(pack_dispatch_kernel, blocks, kThreads, 0, stream, ids, weights, k, first, last, set_size,
      shards, capacity, destinations, rows, experts, scales);
}

}  // namespace kernels
}  // namespace moetron
