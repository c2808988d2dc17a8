// Attention over the paged KV cache, and the cache append.
//
// One kernel serves prefill, chunked prefill, decode and mixed batches. A block takes a tile of
// 64 "query rows" of one sequence and one KV head, the rows being (token, query head of that KV
// head's group) pairs, so the K/V tiles it stages in shared memory serve the whole GQA group.
// It walks its range of keys in tiles of 64 with an online softmax (fp32, base-2 exponents), on
// tensor cores: mma.sync m16n8k16 bf16 -> fp32, FlashAttention-2 style (S and O stay in
// registers, 16 rows per warp; P is rounded to bf16 for P.V). K/V tiles stream in through
// cp.async, two deep. For few long sequences (decode) the key range is split over blocks
// (grid z) and a second kernel merges the partial results.
// Decode (one token a sequence, at most 16 query heads per KV head) has one warp's worth of
// rows: there a block holds 16 rows and its 4 warps take a quarter of each key tile each, every
// warp with its own online softmax, merged in shared memory at the end (flash-decoding inside
// the block). With 64 rows and a tile's 64 keys on the one warp that had rows, the other three
// only streamed the cache: 36% of HBM at batch 64 under ncu (perf/NOTES.md, tenth session).
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "common.cuh"
#include "mma.cuh"
#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"

namespace moetron {
namespace kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxSplits = 32;
constexpr int kMinKeysPerSplit = 128;  // default; MOETRON_ATTENTION_MIN_KEYS overrides (A/B runs)
constexpr int kBlocksPerSm = 4;  // split the keys until the grid has this many blocks per SM
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kRows = 64;  // query rows per block: 4 warps x 16
constexpr int kWarpRows = 16;  // query rows per block when the warps split the keys (decode)
constexpr int kKeys = 64;  // keys per tile
static_assert(kThreads == 2 * kKeys, "a tile's load gives each key two threads");

// Tokens of one sequence a block takes: its query rows (16 when its warps split each key tile,
// else 4 x 16) over the query heads that share a KV head. The grid, the plan and the blocks'
// work all count tiles by it.
__host__ __device__ constexpr int tokens_per_tile(bool warp_keys, int group) {
  return (warp_keys ? kWarpRows : kRows) / group;
}

// What one block works on.
struct BlockWork {
  int seq = 0, q0 = 0, qn = 0;   // the sequence and its tokens [q0, q0 + qn)
  int rows = 0;                  // qn * group
  int group = 1;                 // query heads per KV head
  int kv_head = 0, split = 0;
  int key_begin = 0, key_end = 0;  // keys of this split that some row of the tile may see
};

// Finds the block's (sequence, token range): each sequence's new tokens are cut into tiles of
// tokens_per_tile tokens, numbered across sequences. False for the spare tiles at the end of
// the grid (the grid is sized by a host-known bound). Each warp scans the sequences 32 at a
// time (a prefix sum of their tile counts in registers), so a block of a batch of S sequences
// reads S / 32 rounds of query_start, not S dependent pairs: at batch 256 the serial walk cost
// the last sequences' blocks ~250 loads before their first cache read. Needs the whole warp.
template <bool kWarpKeys>
__device__ bool find_work(const PagedAttentionArgs& a, int num_splits, int split_len, BlockWork& w) {
  constexpr unsigned kAll = 0xffffffffu;
  w.group = a.num_q_heads / a.num_kv_heads;
  const int tile_tokens = tokens_per_tile(kWarpKeys, w.group);
  const int lane = threadIdx.x & 31;
  int work = blockIdx.x;  // tiles still to skip, counted from sequence `base`
  w.seq = -1;
  for (int base = 0; base < a.num_seqs; base += 32) {
    const int s = base + lane;
    const int qs = s < a.num_seqs ? a.query_start[s] : 0;
    const int qe = s < a.num_seqs ? a.query_start[s + 1] : 0;
    const int tiles = (qe - qs + tile_tokens - 1) / tile_tokens;
    int through = tiles;  // tiles of sequences base .. s
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const int before = __shfl_up_sync(kAll, through, off);
      if (lane >= off) through += before;
    }
    const unsigned hit = __ballot_sync(kAll, work < through);
    if (hit != 0u) {
      const int src = __ffs(hit) - 1;
      const int first_tile = __shfl_sync(kAll, through - tiles, src);
      w.seq = base + src;
      w.q0 = __shfl_sync(kAll, qs, src) + (work - first_tile) * tile_tokens;
      w.qn = min(tile_tokens, __shfl_sync(kAll, qe, src) - w.q0);
      break;
    }
    work -= __shfl_sync(kAll, through, 31);
  }
  if (w.seq < 0) return false;
  w.rows = w.qn * w.group;
  w.kv_head = blockIdx.y;
  w.split = blockIdx.z;
  const int kv_len = a.kv_lens[w.seq];
  int last_pos = 0;  // the furthest key any token of the tile sees
  for (int i = 0; i < w.qn; ++i) last_pos = max(last_pos, a.positions[w.q0 + i]);
  w.key_begin = w.split * split_len;
  w.key_end = w.split == num_splits - 1 ? kv_len : min(kv_len, w.key_begin + split_len);
  w.key_end = min(w.key_end, last_pos + 1);
  return true;
}

// The last key row r of the tile may see (causal), or -1 for a row past the tile.
__device__ __forceinline__ int row_limit(const PagedAttentionArgs& a, const BlockWork& w, int r) {
  return r < w.rows ? a.positions[w.q0 + r / w.group] : -1;
}

// Index of row r in the [T * nq] rows of q and out.
__device__ __forceinline__ int64_t global_row(const PagedAttentionArgs& a, const BlockWork& w,
                                              int r) {
  return static_cast<int64_t>(w.q0 + r / w.group) * a.num_q_heads + w.kv_head * w.group +
         r % w.group;
}

// Where a split's results go: the output itself (normalised) when there is one split, else
// the fp32 partial sums and the row's (max, sum) for the merge kernel.
struct ResultSink {
  bf16* out;
  float* part_o;
  float* part_ml;
  int64_t rows_total;
  int num_splits;

  template <int HD>
  __device__ void pair(const BlockWork& w, int64_t row, int col, float o0, float o1,
                       float l) const {
    if (num_splits == 1) {
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      *reinterpret_cast<__nv_bfloat162*>(out + row * HD + col) =
          __floats2bfloat162_rn(o0 * inv, o1 * inv);
    } else {
      const int64_t part = w.split * rows_total + row;
      *reinterpret_cast<float2*>(part_o + part * HD + col) = make_float2(o0, o1);
    }
  }
  __device__ void stats(const BlockWork& w, int64_t row, float m, float l) const {
    if (num_splits == 1) return;
    const int64_t part = w.split * rows_total + row;
    part_ml[2 * part] = m;
    part_ml[2 * part + 1] = l;
  }
};

// Cache slot of key `key` of a sequence (its block table), or -1 past the split's keys.
__device__ __forceinline__ int cache_slot(const PagedAttentionArgs& a, const int32_t* table,
                                          int key, int key_end) {
  return key < key_end ? table[key / a.block_size] * a.block_size + key % a.block_size : -1;
}

// Online-softmax rescale: the factor for the old sums when the running max moves to m_new.
__device__ __forceinline__ float rescale_factor(float m_old, float m_new) {
  return m_new == -INFINITY ? 1.0f : exp2f(m_old - m_new);
}


// Four 8x8 bf16 matrices from shared memory, transposed: the B operands of two n8 tiles.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(valid ? 16 : 0));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <int HD>
struct AttentionSmem {
  static constexpr int kPitch = HD + 8;  // 16-byte aligned rows, conflict-free fragment loads
  bf16 k[2][kKeys][kPitch];
  bf16 v[2][kKeys][kPitch];
};

// Each warp's softmax state for its quarter of the keys (warp-split blocks), in the K/V tiles'
// shared memory once the key loop is done.
template <int HD>
struct WarpStates {
  float o[kWarps][kWarpRows][HD];
  float m[kWarps][kWarpRows];
  float l[kWarps][kWarpRows];
};
static_assert(sizeof(WarpStates<16>) <= sizeof(AttentionSmem<16>) &&
                  sizeof(WarpStates<128>) <= sizeof(AttentionSmem<128>),
              "the warps' states fit where the tiles were");

// Fragment layouts (PTX ISA, mma.m16n8k16): with g = lane / 4 and t = lane % 4, A holds rows g
// and g + 8 at columns 2t, 2t + 1 (+ 8); B holds column g at rows 2t, 2t + 1 (+ 8); C holds rows
// g and g + 8 at columns 2t, 2t + 1. So a warp's S tile in C layout is, pair by pair, the A
// operand of P.V, with no trip through shared memory.
// kWarpKeys: the block's (at most 16) rows are every warp's, and warp w takes keys
// [16 w, 16 w + 16) of each tile.
template <int HD, bool kWarpKeys>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(PagedAttentionArgs a, int num_splits, int split_len,
                             ResultSink sink) {
  pdl_enter();  // first: see common.cuh
  constexpr int kKSteps = HD / 16;  // k16 steps of Q.K^T
  constexpr int kNTiles = HD / 8;   // n8 tiles of O
  constexpr int kChunks = HD / 8;   // 16-byte chunks per cache row
  constexpr int kWarpKeyTiles = kWarpKeys ? kKeys / 8 / kWarps : kKeys / 8;  // n8 key tiles a warp
  extern __shared__ __align__(16) unsigned char smem_raw[];
  AttentionSmem<HD>& sm = *reinterpret_cast<AttentionSmem<HD>*>(smem_raw);

  BlockWork w;
  if (!find_work<kWarpKeys>(a, num_splits, split_len, w)) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int r0 = (kWarpKeys ? 0 : warp * 16) + g, r1 = r0 + 8;  // this lane's two rows
  const int key0 = kWarpKeys ? warp * (kKeys / kWarps) : 0;    // the warp's first key of a tile
  const bool warp_active = kWarpKeys || warp * 16 < w.rows;
  const int lim0 = row_limit(a, w, r0), lim1 = row_limit(a, w, r1);

  // Q fragments stay in registers for the whole key loop.
  uint32_t qf[kKSteps][4];
  {
    const bf16* q0 = a.q + (r0 < w.rows ? global_row(a, w, r0) * HD : 0);
    const bf16* q1 = a.q + (r1 < w.rows ? global_row(a, w, r1) * HD : 0);
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      const int c = ks * 16 + 2 * t;
      qf[ks][0] = r0 < w.rows ? *reinterpret_cast<const uint32_t*>(q0 + c) : 0u;
      qf[ks][1] = r1 < w.rows ? *reinterpret_cast<const uint32_t*>(q1 + c) : 0u;
      qf[ks][2] = r0 < w.rows ? *reinterpret_cast<const uint32_t*>(q0 + c + 8) : 0u;
      qf[ks][3] = r1 < w.rows ? *reinterpret_cast<const uint32_t*>(q1 + c + 8) : 0u;
    }
  }
  float o[kNTiles][4];
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  const float scale = a.scale * kLog2e;
  const int32_t* table = a.block_tables + static_cast<int64_t>(w.seq) * a.max_blocks_per_seq;

  // A tile's load: two threads a key look up its cache slot (a block-table read and a
  // division each), then each warp copies its 16 keys' rows with every copy instruction
  // covering consecutive 16-byte chunks of consecutive keys (512 bytes for a 128-wide head: two
  // whole rows), the slots passed between lanes by shuffles. Every request then asks for whole
  // 128-byte lines; with a key's row spread over 8 requests, one sector each (thirteenth
  // session), ncu saw L2 70% busy at 53% of the copy rate.
  auto load_tile = [&](int stage, int kt) {
    constexpr int kWarpTileKeys = kKeys / kWarps;  // keys a warp copies: threads 2j, 2j + 1 hold key j
    static_assert(kWarpTileKeys * 2 == 32, "a warp's lanes pair with its keys");
    const int slot = cache_slot(a, table, kt + (threadIdx.x >> 1), w.key_end);
#pragma unroll
    for (int m = 0; m < kChunks / 2; ++m) {
      const int flat = m * 32 + lane;  // the warp's chunk: (key, chunk) in key-major order
      const int j = flat / kChunks, c = (flat % kChunks) * 8;
      const int key_slot = __shfl_sync(0xffffffffu, slot, 2 * j);
      const int64_t off = key_slot < 0 ? 0
          : (static_cast<int64_t>(key_slot) * a.num_kv_heads + w.kv_head) * HD + c;
      const int row = warp * kWarpTileKeys + j;
      cp_async_16(&sm.k[stage][row][c], a.k_cache + off, key_slot >= 0);
      cp_async_16(&sm.v[stage][row][c], a.v_cache + off, key_slot >= 0);
    }
    asm volatile("cp.async.commit_group;\n");
  };

  const int num_tiles = w.key_end > w.key_begin ? (w.key_end - w.key_begin + kKeys - 1) / kKeys : 0;
  if (num_tiles > 0) load_tile(0, w.key_begin);
  for (int it = 0; it < num_tiles; ++it) {
    const int kt = w.key_begin + it * kKeys, st = it & 1;
    if (it + 1 < num_tiles) {
      load_tile(st ^ 1, kt + kKeys);
      asm volatile("cp.async.wait_group 1;\n");
    } else {
      asm volatile("cp.async.wait_group 0;\n");
    }
    __syncthreads();
    if (warp_active) {
      // S = Q K^T for this warp's 16 rows and its keys of the tile.
      float s[kWarpKeyTiles][4];
#pragma unroll
      for (int j = 0; j < kWarpKeyTiles; ++j) {
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        const bf16* krow = &sm.k[st][key0 + j * 8 + g][2 * t];
#pragma unroll
        for (int ks = 0; ks < kKSteps; ++ks)
          mma_16816(s[j], qf[ks], *reinterpret_cast<const uint32_t*>(krow + ks * 16),
                    *reinterpret_cast<const uint32_t*>(krow + ks * 16 + 8));
      }
      // Causal mask, scale, running max over the quad of lanes that share a row.
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < kWarpKeyTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = kt + key0 + j * 8 + 2 * t + (e & 1);
          const int lim = e < 2 ? lim0 : lim1;
          s[j][e] = key <= lim && key < w.key_end ? s[j][e] * scale : -INFINITY;
        }
        mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
        mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
      }
#pragma unroll
      for (int off = 1; off < 4; off <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
      }
      const float new0 = fmaxf(m0, mx0), new1 = fmaxf(m1, mx1);
      const float alpha0 = rescale_factor(m0, new0), alpha1 = rescale_factor(m1, new1);
      const float base0 = new0 == -INFINITY ? 0.0f : new0, base1 = new1 == -INFINITY ? 0.0f : new1;
      m0 = new0;
      m1 = new1;
      float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
      for (int j = 0; j < kWarpKeyTiles; ++j) {
        s[j][0] = exp2f(s[j][0] - base0);
        s[j][1] = exp2f(s[j][1] - base0);
        s[j][2] = exp2f(s[j][2] - base1);
        s[j][3] = exp2f(s[j][3] - base1);
        sum0 += s[j][0] + s[j][1];
        sum1 += s[j][2] + s[j][3];
      }
#pragma unroll
      for (int off = 1; off < 4; off <<= 1) {
        sum0 += __shfl_xor_sync(0xffffffffu, sum0, off);
        sum1 += __shfl_xor_sync(0xffffffffu, sum1, off);
      }
      l0 = l0 * alpha0 + sum0;
      l1 = l1 * alpha1 + sum1;
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        o[n][0] *= alpha0;
        o[n][1] *= alpha0;
        o[n][2] *= alpha1;
        o[n][3] *= alpha1;
      }
      // O += P V, 16 keys at a time.
#pragma unroll
      for (int kk = 0; kk < kWarpKeyTiles / 2; ++kk) {
        const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                                pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
        const bf16* vrow =
            &sm.v[st][key0 + kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8][(lane >> 4) * 8];
#pragma unroll
        for (int np = 0; np < HD / 16; ++np) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vrow + np * 16);
          mma_16816(o[2 * np], pa, b[0], b[1]);
          mma_16816(o[2 * np + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next prefetch overwrites this stage
  }

  if constexpr (kWarpKeys) {
    // Merge the warps' states: each scaled to the largest max, summed in warp order.
    WarpStates<HD>& ws = *reinterpret_cast<WarpStates<HD>*>(smem_raw);
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) {
      const int col = n * 8 + 2 * t;
      ws.o[warp][g][col] = o[n][0];
      ws.o[warp][g][col + 1] = o[n][1];
      ws.o[warp][g + 8][col] = o[n][2];
      ws.o[warp][g + 8][col + 1] = o[n][3];
    }
    if (t == 0) {
      ws.m[warp][g] = m0;
      ws.m[warp][g + 8] = m1;
      ws.l[warp][g] = l0;
      ws.l[warp][g + 8] = l1;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < w.rows * (HD / 2); i += kThreads) {
      const int r = i / (HD / 2), col = (i % (HD / 2)) * 2;
      float m = -INFINITY;
#pragma unroll
      for (int v = 0; v < kWarps; ++v) m = fmaxf(m, ws.m[v][r]);
      float l = 0.0f, o0 = 0.0f, o1 = 0.0f;
#pragma unroll
      for (int v = 0; v < kWarps; ++v) {
        const float f = m == -INFINITY ? 0.0f : exp2f(ws.m[v][r] - m);  // 0 for a warp that saw no key
        l += f * ws.l[v][r];
        o0 += f * ws.o[v][r][col];
        o1 += f * ws.o[v][r][col + 1];
      }
      const int64_t row = global_row(a, w, r);
      sink.pair<HD>(w, row, col, o0, o1, l);
      if (col == 0) sink.stats(w, row, m, l);
    }
    return;
  }
  if (r0 < w.rows) {
    const int64_t row = global_row(a, w, r0);
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) sink.pair<HD>(w, row, n * 8 + 2 * t, o[n][0], o[n][1], l0);
    if (t == 0) sink.stats(w, row, m0, l0);
  }
  if (r1 < w.rows) {
    const int64_t row = global_row(a, w, r1);
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) sink.pair<HD>(w, row, n * 8 + 2 * t, o[n][2], o[n][3], l1);
    if (t == 0) sink.stats(w, row, m1, l1);
  }
}

// ---- the merge of splits ---------------------------------------------------------------------

// Merges the splits' partial softmax results of one (token, head) row: thread d owns column d.
__global__ void merge_splits_kernel(const float* __restrict__ part_o,
                                    const float* __restrict__ part_ml, int num_splits,
                                    int64_t rows_total, int head_dim, bf16* out) {
  pdl_enter();  // first: see common.cuh
  const int64_t row = blockIdx.x;
  const int d = threadIdx.x;
  float m_max = -INFINITY;
  for (int z = 0; z < num_splits; ++z) m_max = fmaxf(m_max, part_ml[2 * (z * rows_total + row)]);
  float l_sum = 0.0f, o = 0.0f;
  if (m_max != -INFINITY) {
    for (int z = 0; z < num_splits; ++z) {
      const int64_t part = z * rows_total + row;
      const float w = exp2f(part_ml[2 * part] - m_max);  // 0 for an empty split
      l_sum += w * part_ml[2 * part + 1];
      o += w * part_o[part * head_dim + d];
    }
  }
  out[row * head_dim + d] = __float2bfloat16(l_sum > 0.0f ? o / l_sum : 0.0f);
}

template <int VEC>
__global__ void kv_append_kernel(const bf16* __restrict__ k, const bf16* __restrict__ v,
                                 const int32_t* __restrict__ slot_mapping, int64_t width,
                                 bf16* k_cache, bf16* v_cache) {
  pdl_enter();  // first: see common.cuh
  const int64_t t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  if (slot < 0) return;
  for (int64_t c = threadIdx.x * VEC; c < width; c += blockDim.x * VEC) {
    float f[VEC];
    load_bf16<VEC>(k + t * width + c, f);
    store_bf16<VEC>(k_cache + slot * width + c, f);
    load_bf16<VEC>(v + t * width + c, f);
    store_bf16<VEC>(v_cache + slot * width + c, f);
  }
}

template <int HD, bool kWarpKeys>
void launch_attention(const PagedAttentionArgs& a, const AttentionPlan& plan, void* workspace,
                      cudaStream_t stream) {
  const int tile_tokens = tokens_per_tile(kWarpKeys, a.num_q_heads / a.num_kv_heads);
  // Tiles of all sequences together never exceed ceil(T / tile_tokens) + S.
  const dim3 grid(static_cast<unsigned>(ceil_div(a.num_tokens, tile_tokens) + a.num_seqs),
                  static_cast<unsigned>(a.num_kv_heads), static_cast<unsigned>(plan.num_splits));
  ResultSink sink;
  sink.out = a.out;
  sink.rows_total = static_cast<int64_t>(a.num_tokens) * a.num_q_heads;
  sink.num_splits = plan.num_splits;
  sink.part_o = static_cast<float*>(workspace);
  sink.part_ml = sink.part_o ? sink.part_o + plan.num_splits * sink.rows_total * HD : nullptr;
  // Over 48 KiB of shared memory for HD = 128: the kernel must opt in (once: common.cuh).
  const size_t smem = sizeof(AttentionSmem<HD>);
  opt_in_dynamic_smem(attention_kernel<HD, kWarpKeys>, smem);
  launch(attention_kernel<HD, kWarpKeys>, grid, kThreads, smem, stream, a, plan.num_splits,
      plan.split_len, sink);
  if (plan.num_splits > 1) {
    launch(merge_splits_kernel, sink.rows_total, HD, 0, stream, sink.part_o, sink.part_ml,
        plan.num_splits, sink.rows_total, HD, a.out);
  }
}

// Keys a split holds at least: kMinKeysPerSplit, or MOETRON_ATTENTION_MIN_KEYS (a multiple of
// the key tile) to measure another choice without a rebuild.
int min_keys_per_split() {
  static const int keys = [] {
    const char* env = std::getenv("MOETRON_ATTENTION_MIN_KEYS");
    if (env == nullptr) return kMinKeysPerSplit;
    const std::optional<uint64_t> v = parse_decimal(env);
    MOETRON_CHECK(v && *v >= kKeys && *v % kKeys == 0 && *v <= 65536,
                  "MOETRON_ATTENTION_MIN_KEYS='" << env << "': expected a multiple of " << kKeys << " up to 65536");
    return static_cast<int>(*v);
  }();
  return keys;
}

template <bool kWarpKeys>
void launch_for_head_dim(const PagedAttentionArgs& a, const AttentionPlan& plan, void* workspace,
                         cudaStream_t stream) {
  switch (a.head_dim) {
    case 16: launch_attention<16, kWarpKeys>(a, plan, workspace, stream); break;
    case 32: launch_attention<32, kWarpKeys>(a, plan, workspace, stream); break;
    case 64: launch_attention<64, kWarpKeys>(a, plan, workspace, stream); break;
    case 96: launch_attention<96, kWarpKeys>(a, plan, workspace, stream); break;
    case 128: launch_attention<128, kWarpKeys>(a, plan, workspace, stream); break;
    default: MOETRON_ASSERT(attention_head_dim_supported(a.head_dim));
  }
}

}  // namespace

bool attention_head_dim_supported(int head_dim) {
  switch (head_dim) {
    case 16: case 32: case 64: case 96: case 128: return true;
    default: return false;
  }
}

AttentionPlan plan_attention(const PagedAttentionArgs& a, int num_sms) {
  AttentionPlan plan;
  const int group = a.num_q_heads / a.num_kv_heads;
  // Decode: one token a sequence (T == S, and every sequence has one), one warp's rows.
  plan.warp_keys = a.num_tokens == a.num_seqs && group <= kWarpRows;
  const int64_t max_kv = a.max_kv_len > 0 ? a.max_kv_len : 1;
  const int64_t busy_blocks =
      std::max<int64_t>(a.num_seqs, ceil_div(a.num_tokens, tokens_per_tile(plan.warp_keys, group))) *
      a.num_kv_heads;
  // Split only a grid that leaves SMs idle; then aim at a few blocks per SM (measured on H100:
  // splitting a grid that already fills the GPU costs more in the merge than it gains).
  int64_t splits = 1;
  if (busy_blocks < num_sms) {
    const int64_t busy = std::max<int64_t>(busy_blocks, 1);
    splits = ceil_div(kBlocksPerSm * static_cast<int64_t>(num_sms), busy);
    splits = std::min<int64_t>(splits, ceil_div(max_kv, min_keys_per_split()));
    // Short contexts in a grid still short of one block per SM (batch 1): splits of one key
    // tile, up to one block per SM. Measured on the H200 (512 keys, 16 heads): 8 splits of 64
    // keys against 4 of 128, OLMoE-1B-7B batch 1 1.32-1.33 against 1.36-1.37 ms a step; the
    // same 64-key splits where the grid passes one block per SM (batch 2) were 2% slower.
    splits = std::max<int64_t>(splits, std::min<int64_t>(num_sms / busy, ceil_div(max_kv, kKeys)));
  }
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, kMaxSplits));
  plan.split_len = static_cast<int>(ceil_div(ceil_div(max_kv, splits), kKeys) * kKeys);
  plan.num_splits = static_cast<int>(ceil_div(max_kv, plan.split_len));
  if (plan.num_splits > 1) {
    const int64_t rows_total = static_cast<int64_t>(a.num_tokens) * a.num_q_heads;
    plan.workspace_bytes =
        static_cast<size_t>(plan.num_splits * rows_total * (a.head_dim + 2)) * sizeof(float);
  }
  return plan;
}

void paged_attention(const PagedAttentionArgs& a, const AttentionPlan& plan, void* workspace,
                     cudaStream_t stream) {
  if (a.num_tokens == 0) return;
  if (plan.warp_keys) {
    launch_for_head_dim<true>(a, plan, workspace, stream);
  } else {
    launch_for_head_dim<false>(a, plan, workspace, stream);
  }
}

void kv_append(const bf16* k, const bf16* v, const int32_t* slot_mapping, int64_t num_tokens,
               int64_t kv_width, bf16* k_cache, bf16* v_cache, cudaStream_t stream) {
  if (num_tokens == 0) return;
  if (kv_width % 8 == 0 && aligned16(k) && aligned16(v) && aligned16(k_cache) &&
      aligned16(v_cache)) {
    const int threads = static_cast<int>(std::min<int64_t>(256, ceil_div(kv_width / 8, 32) * 32));
    launch(kv_append_kernel<8>, num_tokens, threads, 0, stream, k, v, slot_mapping, kv_width,
        k_cache, v_cache);
  } else {
    launch(kv_append_kernel<1>, num_tokens, 256, 0, stream, k, v, slot_mapping, kv_width, k_cache,
        v_cache);
  }
}

int attention_min_keys_per_split() { return min_keys_per_split(); }

}  // namespace kernels
}  // namespace moetron
