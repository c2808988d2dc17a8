// Launchers of the CUDA kernels in kernels/*.cu (one operator family per file, each launcher
// beside its kernel). They take raw device pointers and a stream, enqueue work and return: no
// host synchronisation, no allocation. Shapes are checked by the caller (CudaOps); launchers
// check only what the kernels themselves rely on. Activations are bf16; accumulation is fp32.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/random_fill.hpp"

namespace moetron {
namespace radix {
struct RowParams;  // moetron/sampling/radix_sampling.hpp
}  // namespace radix
namespace kernels {

using bf16 = __nv_bfloat16;

// Throws moetron::Error "CUDA error <what> in <call> at <file>:<line>".
[[noreturn]] void throw_cuda_error(const char* call, const char* what, const char* file, int line);

}  // namespace kernels
}  // namespace moetron

// CUDA_CHECK(cudaMalloc(...)): any status but cudaSuccess becomes a moetron::Error naming the
// call, the file and the line.
#define CUDA_CHECK(call)                                                                      \
  do {                                                                                        \
    cudaError_t cuda_check_status_ = (call);                                                  \
    if (cuda_check_status_ != cudaSuccess)                                                    \
      ::moetron::kernels::throw_cuda_error(#call, cudaGetErrorString(cuda_check_status_),     \
                                           __FILE__, __LINE__);                               \
  } while (0)
// After every kernel launch: reports a bad launch configuration at the launch that made it.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace moetron {
namespace kernels {

// ---- embedding.cu: row gathers and scatters -------------------------------------------------
// out[i, :] = table[rows[i], :] for i < n (rows outside [0, table_rows) give a zero row; the
// engine validates token ids before they reach the device).
void gather_rows(const bf16* table, int64_t table_rows, int64_t cols, const int32_t* rows,
                 int64_t n, bf16* out, cudaStream_t stream);
// acc[rows[i], :] += scale[i] * x[i, :] for i < n; rows may repeat (atomic adds; rows outside
// [0, acc_rows) are skipped).
void scatter_add_rows(bf16* acc, int64_t acc_rows, int64_t cols, const bf16* x,
                      const int32_t* rows, const float* scale, int64_t n, cudaStream_t stream);

// ---- rmsnorm.cu ------------------------------------------------------------------------------
// out = x * rsqrt(mean(x^2) + eps) * w, row by row ([rows, cols]).
void rmsnorm(const bf16* x, const bf16* w, int64_t rows, int64_t cols, float eps, bf16* out,
             cudaStream_t stream);
// residual += delta (rounded to bf16, as the model stores it), then out = rmsnorm(residual) * w.
void add_rmsnorm(bf16* residual, const bf16* delta, const bf16* w, int64_t rows, int64_t cols,
                 float eps, bf16* out, cudaStream_t stream);
// sumsq[r] = sum_c x[r, c]^2 in fp32.
void row_sumsq(const bf16* x, int64_t rows, int64_t cols, float* sumsq, cudaStream_t stream);
// out = x * rsqrt(sumsq[r] / total_cols + eps) * w.
void rmsnorm_with_sumsq(const bf16* x, const float* sumsq, int64_t rows, int64_t cols,
                        int64_t total_cols, const bf16* w, float eps, bf16* out,
                        cudaStream_t stream);

// ---- rope.cu ---------------------------------------------------------------------------------
// Rotate-half rotary embedding in place on q [T, nq * hd] and k [T, nk * hd]: for i < hd / 2,
// inv_freq = 1 / theta^(2i / hd), angle = position * inv_freq, all in fp32 as Hugging Face does.
void rope(bf16* q, bf16* k, const int32_t* positions, int64_t num_tokens, int64_t num_q_heads,
          int64_t num_kv_heads, int64_t head_dim, float theta, cudaStream_t stream);

// QK-norm, RoPE and the KV append of one QKV projection qkv [T, q_cols + 2 kv_cols] in one
// launch (Ops::attention_inputs): q_out [T, q_cols]; k and v to cache rows slot_mapping[t]
// (slot < 0: not stored). norm_kind: kHeadNorm*; q_norm/k_norm [head_dim] per head or
// [q_cols]/[kv_cols] whole row. Needs attention_inputs_smem_bytes() of shared memory
// (the caller checks it against the device's per-block limit).
constexpr int kHeadNormNone = 0, kHeadNormPerHead = 1, kHeadNormWholeRow = 2;
size_t attention_inputs_smem_bytes(int64_t q_cols, int64_t kv_cols, int64_t head_dim);
void attention_inputs(const bf16* qkv, int64_t q_cols, int64_t kv_cols, const int32_t* positions,
                      const int32_t* slot_mapping, int64_t num_tokens, int64_t head_dim,
                      float theta, int norm_kind, const bf16* q_norm, const bf16* k_norm,
                      float eps, bf16* q_out, bf16* k_cache, bf16* v_cache, cudaStream_t stream);

// ---- attention.cu ----------------------------------------------------------------------------
// k, v [T, kv_width] are written to cache rows slot_mapping[t] ([slots, kv_width]); slot < 0
// (padding) is skipped.
void kv_append(const bf16* k, const bf16* v, const int32_t* slot_mapping, int64_t num_tokens,
               int64_t kv_width, bf16* k_cache, bf16* v_cache, cudaStream_t stream);

// Causal attention of each sequence's new queries over its paged cache: the query of token t
// attends the keys at positions [0, positions[t]] of its sequence (positions[t] < kv_len).
struct PagedAttentionArgs {
  const bf16* q = nullptr;        // [T, nq * hd]
  const int32_t* positions = nullptr;     // [T]
  const bf16* k_cache = nullptr;  // [num_blocks, block_size, nk, hd]
  const bf16* v_cache = nullptr;
  const int32_t* query_start = nullptr;   // [S + 1]
  const int32_t* kv_lens = nullptr;       // [S]
  const int32_t* block_tables = nullptr;  // [S, max_blocks_per_seq]
  int num_tokens = 0, num_seqs = 0;
  int num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  int block_size = 0, max_blocks_per_seq = 0;
  int max_kv_len = 0;  // bound on kv_lens, sizes the split along the KV length
  float scale = 1.0f;
  bf16* out = nullptr;  // [T, nq * hd]
};
// How the work splits along the KV length: one pass when the grid already fills the GPU, more
// splits (then a reduction) for few long sequences, as in decode.
struct AttentionPlan {
  bool warp_keys = false;  // decode: a block's 16 rows shared by its warps, which split the keys
  int num_splits = 1;
  int split_len = 0;  // keys per split, a multiple of the key tile
  size_t workspace_bytes = 0;  // fp32 partial outputs, needed when num_splits > 1
};
bool attention_head_dim_supported(int head_dim);  // 16, 32, 64, 96, 128
// Query heads per KV head the kernel handles (a block holds 64 rows: tokens x group).
constexpr int kAttentionMaxGroup = 64;
AttentionPlan plan_attention(const PagedAttentionArgs& args, int num_sms);
// workspace: plan.workspace_bytes of device memory (may be null when that is 0).
void paged_attention(const PagedAttentionArgs& args, const AttentionPlan& plan, void* workspace,
                     cudaStream_t stream);

// ---- router.cu -------------------------------------------------------------------------------
// Per token: softmax over E logits (fp32), top-k in descending probability (ties: lower expert
// index), optionally renormalised to sum 1. logits are bf16 or fp32 ([T, E], E <= 256).
// valid_tokens (device, may be null): tokens at or past *valid_tokens are padding, ids -1 and
// weights 0 (a recorded decode step's bucket past its real batch).
constexpr int kRouterMaxExperts = 256;
void router_topk(const void* logits, bool logits_bf16, int64_t num_tokens, int64_t num_experts,
                 int64_t k, bool renormalize, const int32_t* valid_tokens, int32_t* ids, float* weights,
                 cudaStream_t stream);

// ---- moe_permute.cu: expert-contiguous order, built on the device ----------------------------
// The permutation of one MoE layer's (token, slot) pairs into expert-contiguous rows. Every
// array lives on the device and is sized by host-known bounds, so the whole pipeline can be
// captured in a CUDA graph.
struct MoeRouting {
  int32_t* counts = nullptr;        // [num_local] tokens routed to each local expert
  int32_t* offsets = nullptr;       // [num_local + 1] first permuted row of each expert
  int32_t* tile_offsets = nullptr;  // [num_local + 1] first GEMM row tile of each expert
  int32_t* slot_rank = nullptr;     // [T * k] rank of a slot among its expert's slots
  int32_t* row_of_slot = nullptr;   // [T * k] permuted row of a slot, -1 if not local
  int32_t* token_of_row = nullptr;  // [T * k] the token a permuted row holds (moe_route, one block)
  // [max_tiles] what each GEMM row tile computes: {expert, first permuted row, rows, 0}; rows
  // is 0 past the last tile. One load tells a GEMM block its work (no search over offsets).
  int4* tiles = nullptr;
  int64_t max_tiles = 0;  // grouped_gemm_max_tiles
  // Optional: every id in [0, served_experts) counted here too (accumulate_expert_counts), by
  // the one routing block where it runs, else by a launch of its own.
  int64_t* served = nullptr;
  int64_t served_experts = 0;
};
// counts, ranks, offsets, tile offsets and the tile table (tiles of tile_rows rows) from ids
// [T, k]. Returns true when it also wrote row_of_slot and token_of_row (few slots: one block
// routes them all); the expert GEMMs can then read the tokens' rows in place, and moe_permute
// is not needed.
bool moe_route(const int32_t* ids, int64_t num_tokens, int64_t k, int64_t first_expert,
               int64_t num_local, int tile_rows, const MoeRouting& routing, cudaStream_t stream);
// x_perm[row_of_slot[s]] = x[s / k] for local slots; also writes row_of_slot.
void moe_permute(const bf16* x, const int32_t* ids, int64_t num_tokens, int64_t k,
                 int64_t hidden, int64_t first_expert, const MoeRouting& routing, bf16* x_perm,
                 cudaStream_t stream);
// out[t] = sum over local slots j of weights[t, j] * y_perm[row_of_slot[t * k + j]] (fp32 sum;
// tokens without a local slot get zeros).
void moe_unpermute_combine(const bf16* y_perm, const int32_t* row_of_slot, const float* weights,
                           int64_t num_tokens, int64_t k, int64_t hidden, bf16* out,
                           cudaStream_t stream);

// counts[e] += number of ids equal to e, for e < num_experts (routing statistics; ids outside
// the range are not counted).
void accumulate_expert_counts(const int32_t* ids, int64_t n, int64_t num_experts,
                              int64_t* counts, cudaStream_t stream);
// For records [layers, rows, k] and their first `tokens` rows: counts[l, a] += 1 and
// pairs[l, a, b] += 1 for every slot pair j, m of a token with a = ids[l, t, j],
// b = ids[l, t, m], both in [0, E) (Ops::accumulate_routing).
void accumulate_routing(const int32_t* records, int64_t layers, int64_t rows, int64_t tokens,
                        int64_t k, int64_t num_experts, int64_t* counts, int64_t* pairs,
                        cudaStream_t stream);
// x[r, c] += bias[c] for x F32 [rows, cols] (Ops::add_row_bias).
void add_row_bias_f32(float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// Expert dispatch into fixed-capacity buffers (Ops::pack_dispatch): slots of tokens
// [first, last) of ids/weights [*, k] to destination (ids / set_size) * shards + shard, each
// with `capacity` entries of rows, experts and scales (-1, -1, 0 past its count).
void pack_dispatch(const int32_t* ids, const float* weights, int64_t k, int64_t first,
                   int64_t last, int64_t set_size, int64_t shards, int64_t capacity,
                   int64_t destinations, int32_t* rows, int32_t* experts, float* scales,
                   cudaStream_t stream);

// ---- expert_replicas.cu ----------------------------------------------------------------------
// out[t, j] = table[e, 1 + t % table[e, 0]] for e = ids[t, j] in [0, experts), else -1
// (Ops::route_to_replicas; table [experts, cols]).
void route_to_replicas(const int32_t* ids, int64_t tokens, int64_t k, const int32_t* table,
                       int64_t experts, int64_t cols, int32_t* out, cudaStream_t stream);
// Rank emulation (Ops::pack_from_peers): for each of `peers` peers, its table (senders[p, 0] of
// tables [*, experts, cols]) and tp rank (senders[p, 1] of tp_size), the `capacity` entries of
// rows and out_experts its share of ids [tokens, k] routed to copies sends expert set `set`.
void pack_from_peers(const int32_t* ids, int64_t tokens, int64_t k, const int32_t* tables, int64_t experts,
                     int64_t cols, const int32_t* senders, int64_t peers, int64_t tp_size, int64_t set_size,
                     int64_t set, int64_t capacity, int32_t* rows, int32_t* out_experts, cudaStream_t stream);

// ---- dense_gemv.cu: decode-sized dense projections ------------------------------------------
// out [m, n] = x [m, k] . w [n, k]^T (+ bias [n], added in fp32 before the one rounding), for
// m <= kDenseGemvMaxRows rows, on tensor cores with the weights streamed by every SM and read
// ahead of the previous kernel's end (PDL). The caller checks dense_gemv_supports first (k a
// multiple of 8, x and w 16-byte aligned); other shapes take cuBLAS.
constexpr int64_t kDenseGemvMaxRows = 16;
bool dense_gemv_supports(int64_t m, int64_t n, int64_t k, const void* x, const void* w);
void dense_gemv(const bf16* x, const bf16* w, const bf16* bias, int64_t m, int64_t n, int64_t k,
                bf16* out, cudaStream_t stream);
void dense_gemv(const bf16* x, const bf16* w, const bf16* bias, int64_t m, int64_t n, int64_t k,
                float* out, cudaStream_t stream);

// ---- grouped_gemm.cu: per-expert GEMMs ------------------------------------------------------
// Decode-sized loads (every expert has a handful to a few dozen rows, and the weights are the
// cost) run on tensor cores with the weights as the MMA's row operand (DecodeExpertKernel::kMma,
// the default: row tiles of kMmaMinTileRows to kGemvMaxRows rows, then kMmaTileRows up to
// kMmaTileMaxMeanRows rows an expert on average, then kWideTileRows up to 2 x kLargeTileRows
// where those fill the device, else kMmaTileRows up to that many rows and kSmallTileRows past
// it), or as GEMVs on CUDA cores for tiles of up to kGemvMaxRows
// rows, 16-row WMMA tiles and kSmallTileRows-row WMMA tiles (kCudaCores). kLargeTileRows rows
// run as WMMA tiles under both.
// grouped_gemm_tile_rows picks one from the step's token count, top-k, number of local experts,
// their widths and the device's SMs; moe_route must count tiles of the same size (MoeRouting::tile_offsets) as the two
// GEMMs then use. Any tile size is correct for any routing (an expert with more rows than a
// tile gets several tiles).
constexpr int kGemvMaxRows = static_cast<int>(kExpertGemvMaxTokens);
// Up to kMmaTileRows rows an expert on average, 32-row tensor-core GEMV tiles: 64-row ones lost
// there (H200, tenth session: OLMoE 256 tokens 421 against 319 us, Qwen1.5 454 against 294,
// decode batch 256 9-13% slower; every warp loads all the tile's token rows for its k chunk, so
// at 64 rows it reads twice the bytes of weights it streams, from L2).
constexpr int kMmaTileRows = 32;
// ... but only up to 24 rows an expert on average where the wide tiles below fill the device: at
// 25-32 the busier half of the experts gets a second 32-row tile and streams its weights twice,
// and the wide tiles took less time (expert_gemm_bench, H200, nineteenth session: Mixtral 112 /
// 120 / 128 tokens 0.97 / 1.05 / 1.20 ms -> 0.88 / 0.88 / 0.90; OLMoE 256 tokens 0.32 -> 0.29 ms;
// equal at 24-26 rows).
constexpr int kMmaTileMaxMeanRows = 24;
// Past it (Mixtral-like experts from batch 100), tiles of up to 96 rows whose block's warps
// share the token loads (grouped_mma_wide_kernel): sized so that an expert some way above the
// average (Mixtral at batch 256: 64 rows an expert on average) still gets a single tile, as
// every tile streams its expert's weights once; 12 token blocks of accumulators per lane. Its
// blocks take 128 weight rows over the whole K, so where the local experts' first tiles would
// not give every SM a block (wide_tiles_fill: an expert-parallel rank with one Mixtral expert,
// 32 blocks for the down projection, ran its decode step 41% slower), 64-row tensor-core GEMV
// tiles (their warps split K) run instead.
constexpr int kWideTileRows = 96;
// Tiles of 1, 2 and 4 rows (decode batches up to 4) stay on the CUDA-core GEMVs under kMma too:
// there the expert call alone was as fast or faster on them (H200, perf/expert_gemm_bench, four
// shapes: 2 tokens 1-18% faster on the GEMVs, 4 tokens within -3%..+8%), while at 8 tokens the
// tensor-core GEMV takes 15-25% less time.
constexpr int kMmaMinTileRows = 8;
constexpr int kTinyTileRows = 16;
constexpr int kSmallTileRows = 64;
constexpr int kLargeTileRows = static_cast<int>(kExpertLargeTileRows);
int grouped_gemm_tile_rows(int64_t num_tokens, int64_t k, int64_t num_local, int64_t hidden, int64_t inter,
                           int sms, DecodeExpertKernel decode);
// Whether the wide tiles' two GEMMs give each of `sms` SMs a block over num_local experts' first
// tiles (hidden and inter: the expert's widths on this rank).
bool wide_tiles_fill(int64_t num_local, int64_t hidden, int64_t inter, int sms);
// Row tiles the GEMMs launch for at most max_rows permuted rows: each expert's last tile may be
// partial, and no tile is empty.
int64_t grouped_gemm_max_tiles(int tile_rows, int64_t max_rows, int64_t num_local);
// act[r, :] = silu(a_r . G_e^T) * (a_r . U_e^T) for each permuted row r of expert e, with
// gate_up [num_local, 2 * inter, hidden] (gate rows, then up rows); a_r is x[r] when
// token_of_row is null (x permuted), else x[token_of_row[r]] (x the tokens' rows: the
// permutation folded into the GEMM's loads). max_rows bounds the permuted rows (T * k);
// hidden and inter must be multiples of 8.
void grouped_gemm_swiglu(int tile_rows, DecodeExpertKernel decode, const bf16* x, const int32_t* token_of_row,
                         const bf16* gate_up, const MoeRouting& routing, int64_t num_local,
                         int64_t max_rows, int64_t hidden, int64_t inter, bf16* act,
                         cudaStream_t stream);
// Split K for the wide tiles' down projection. Its blocks each take 128 output columns of a tile
// over the whole of inter, so Mixtral's 8 experts give 256 blocks: two of the three an H200 SM
// holds, and that GEMM read its weights at 1.31 TB/s against the gate/up GEMM's 1.89 (ncu, 256
// tokens, nineteenth session). `splits` blocks share each output tile's K; the last to finish
// adds their float32 sums (in split order: deterministic). partial: splits x max_rows x hidden
// floats of scratch; counters: counter_capacity ints, zero before the first launch, left zero
// after each. A launch whose tiles x column blocks exceed counter_capacity runs unsplit.
constexpr int kMaxDownSplits = 4;
struct DownSplit {
  int splits = 1;
  float* partial = nullptr;
  int* counters = nullptr;
  int64_t counter_capacity = 0;
};
// The splits that bring the wide down projection's blocks (an expected tile per expert per 96 of
// its rows, 128 columns each) to about two full waves on `sms` SMs: at most kMaxDownSplits and
// the K steps inter has; 1 where one split already fills them. blocks_per_sm: wide_blocks_per_sm.
int wide_down_splits(int64_t num_tokens, int64_t k, int64_t num_local, int64_t hidden, int64_t inter, int sms,
                     int blocks_per_sm);
// The wide tiles' blocks an SM of the current device holds at once (3 on an H200: registers).
int wide_blocks_per_sm();
// y[r, :] = act[r] . D_e^T with down [num_local, hidden, inter]. `split` applies to the wide
// tiles only (tile_rows == kWideTileRows).
void grouped_gemm_down(int tile_rows, DecodeExpertKernel decode, const bf16* act, const bf16* down,
                       const MoeRouting& routing, int64_t num_local, int64_t max_rows,
                       int64_t inter, int64_t hidden, bf16* y, cudaStream_t stream,
                       const DownSplit& split = {});
// One token's expert outputs, weighted and summed (decode at batch 1; replaces grouped_gemm_down
// and moe_unpermute_combine): out [1, hidden] = sum over j < k with row_of_slot[j] >= 0 of
// weights[j] * bf16(down_{ids[j] - first_expert} act[row_of_slot[j]]).
void gemv_down_combine(const bf16* act, const int32_t* row_of_slot, const int32_t* ids,
                       const float* weights, int64_t k, int64_t first_expert, const bf16* down,
                       int64_t inter, int64_t hidden, bf16* out, cudaStream_t stream);

// ---- settings read from the environment once a process (A/B measurements) ---------------------
// CudaOps::kernel_settings reports them with its own, so that profiles and results say which
// kernels they timed.
// Whether launches on the current device may overlap their predecessor (MOETRON_PDL; sm_90+;
// common.cuh).
bool pdl_enabled();
// Keys a decode attention split holds at least (MOETRON_ATTENTION_MIN_KEYS; attention.cu).
int attention_min_keys_per_split();
// Blocks a row the device sampler is forced to take (MOETRON_SAMPLER_BLOCKS_PER_ROW), 0 where it
// picks them itself (sampling.cu).
int sampler_forced_blocks_per_row();

// ---- grouped_gemm_sm90.cu: prefill-sized expert GEMMs on Hopper (wgmma + TMA, sm_90a) -----
// The large tiles' two products (tile table of kLargeTileRows rows from moe_route) on warpgroup
// MMA fed by TMA: one launch for every expert, no host sync (graph-capturable). The input rows
// must be permuted (x_perm, not read through token_of_row); hidden and inter multiples of 8, the
// operands 16-byte aligned. Only where grouped_gemm_sm90_available() (CudaOps checks).
// Whether the current device runs this binary's sm_90a image (compute capability 9.0).
bool grouped_gemm_sm90_available();
// act [rows, inter] = silu(x_perm G_e^T) * (x_perm U_e^T), gate_up [num_local, 2 * inter, hidden].
void grouped_gemm_sm90_swiglu(const bf16* x_perm, const bf16* gate_up, const MoeRouting& routing, int64_t num_local,
                              int64_t max_rows, int64_t hidden, int64_t inter, bf16* act, cudaStream_t stream);
// y [rows, hidden] = act D_e^T, down [num_local, hidden, inter].
void grouped_gemm_sm90_down(const bf16* act, const bf16* down, const MoeRouting& routing, int64_t num_local,
                            int64_t max_rows, int64_t inter, int64_t hidden, bf16* y, cudaStream_t stream);

// ---- random_fill.cu --------------------------------------------------------------------------
// out[r * cols + c] = bf16 of the generator's element first + r * row_stride + c of `fill`'s
// tensor, rounded to `source` (BF16, F16 or F32) first: what the host writes and uploads.
void fill_random_rows(const RandomFill& fill, DType source, int64_t first, int64_t row_stride, int64_t rows,
                      int64_t cols, bf16* out, cudaStream_t stream);

// ---- elementwise.cu --------------------------------------------------------------------------
void add_inplace(bf16* acc, const bf16* x, int64_t n, cudaStream_t stream);  // acc += x
void clamp_inplace(bf16* x, int64_t n, float limit, cudaStream_t stream);
void bf16_to_float(const bf16* x, int64_t n, float* out, cudaStream_t stream);
void float_to_bf16(const float* x, int64_t n, bf16* out, cudaStream_t stream);
void half_to_bf16(const __half* x, int64_t n, bf16* out, cudaStream_t stream);
// out[t, :] += bias (out [rows, cols]).
void add_bias_rows(bf16* out, const bf16* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i]; gate_up [rows, 2 * inter].
void silu_mul(const bf16* gate_up, int64_t rows, int64_t inter, bf16* out, cudaStream_t stream);
// acc[t, :] += sigmoid(x[t, :] . gate_w) * y[t, :]   ([rows, cols]).
void add_sigmoid_gated(bf16* acc, const bf16* x, const bf16* gate_w, const bf16* y, int64_t rows,
                       int64_t cols, cudaStream_t stream);

// ---- sampling.cu -----------------------------------------------------------------------------
// ids[r] = argmax_c logits[r, c] (ties: lowest index); logits bf16 or fp32 [rows, cols].
void argmax_rows(const void* logits, bool logits_bf16, int64_t rows, int64_t cols, int32_t* ids,
                 cudaStream_t stream);
// ids[r] = the token sample_token (moetron/sampling/sampling.hpp) draws from logits [rows, cols]
// (fp32) with params[r] (device memory, [rows]): radix::sample_row, radix::blocks_per_row blocks
// per row. workspace: device memory of sample_rows_workspace_bytes(rows, cols) bytes (0 when a
// block has each row to itself), not used by anything else while the launch runs.
size_t sample_rows_workspace_bytes(int64_t rows, int64_t cols);
void sample_rows(const float* logits, int64_t rows, int64_t cols, const radix::RowParams* params,
                 int32_t* ids, void* workspace, size_t workspace_size, cudaStream_t stream);

}  // namespace kernels
}  // namespace moetron
