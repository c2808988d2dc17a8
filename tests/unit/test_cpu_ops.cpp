// CpuOps against naive formulations in double precision, on random (never zero) inputs.
// Tolerances are relative: |got - want| <= rtol * (|want| + rms(want)), the rms term standing in
// for outputs that cancel to near zero.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace {

using Vec = std::vector<float>;
using Ref = std::vector<double>;
using Ids = std::vector<int32_t>;

void expect_close(const Vec& got, const Ref& want, double rtol) {
  ASSERT_EQ(got.size(), want.size());
  double sq = 0.0;
  for (double w : want) sq += w * w;
  const double rms = want.empty() ? 0.0 : std::sqrt(sq / want.size());
  int failures = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    if (!(err <= rtol * (std::fabs(want[i]) + rms)) && ++failures <= 5)
      ADD_FAILURE() << "element " << i << ": got " << got[i] << ", want " << want[i]
                    << " (error " << err << ", rtol " << rtol << ")";
  }
  EXPECT_EQ(failures, 0) << "elements out of tolerance, of " << got.size();
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// ---- naive references ----
Ref ref_linear(const Vec& x, const Vec& w, const Vec* bias, int64_t rows, int64_t k, int64_t n) {
  Ref out(rows * n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double s = bias ? (*bias)[c] : 0.0;
      for (int64_t i = 0; i < k; ++i) s += static_cast<double>(x[r * k + i]) * w[c * k + i];
      out[r * n + c] = s;
    }
  return out;
}

Ref ref_rmsnorm(const Ref& x, const Vec& w, double eps) {
  const size_t cols = w.size();
  Ref out(x.size());
  for (size_t r = 0; r < x.size() / cols; ++r) {
    double ms = 0.0;
    for (size_t c = 0; c < cols; ++c) ms += x[r * cols + c] * x[r * cols + c];
    const double inv = 1.0 / std::sqrt(ms / cols + eps);
    for (size_t c = 0; c < cols; ++c) out[r * cols + c] = x[r * cols + c] * inv * w[c];
  }
  return out;
}

Ref ref_swiglu(const Vec& x, const float* gate_up, const float* down, int64_t rows, int64_t h,
               int64_t inter) {
  Ref out(rows * h, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    Ref act(inter);
    for (int64_t i = 0; i < inter; ++i) {
      double g = 0.0, u = 0.0;
      for (int64_t c = 0; c < h; ++c) {
        g += static_cast<double>(gate_up[i * h + c]) * x[r * h + c];
        u += static_cast<double>(gate_up[(inter + i) * h + c]) * x[r * h + c];
      }
      act[i] = silu(g) * u;
    }
    for (int64_t c = 0; c < h; ++c)
      for (int64_t i = 0; i < inter; ++i) out[r * h + c] += down[c * inter + i] * act[i];
  }
  return out;
}

Ref to_ref(const Vec& v) { return Ref(v.begin(), v.end()); }

class CpuOpsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Ops> ops = make_cpu_ops();
  std::mt19937 rng{20240611};

  Vec normal(size_t n, float stddev = 1.0f) {
    std::normal_distribution<float> dist(0.0f, stddev);
    Vec v(n);
    for (float& x : v) x = dist(rng);
    return v;
  }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

  Tensor upload(const Vec& v, std::vector<int64_t> shape) {
    Tensor t = ops->alloc(DType::F32, std::move(shape));
    EXPECT_EQ(t.numel(), static_cast<int64_t>(v.size()));
    ops->copy_from_host(t, v.data());
    return t;
  }
  Tensor upload(const Ids& v, std::vector<int64_t> shape) {
    Tensor t = ops->alloc(DType::I32, std::move(shape));
    EXPECT_EQ(t.numel(), static_cast<int64_t>(v.size()));
    ops->copy_from_host(t, v.data());
    return t;
  }
  Tensor zeros(std::vector<int64_t> shape, DType dtype = DType::F32) {
    Tensor t = ops->alloc(dtype, std::move(shape));
    ops->fill_zero(t);
    return t;
  }
  Vec download(const Tensor& t) {
    Vec v(t.numel());
    ops->to_host(t, v.data());
    return v;
  }
  Ids download_ids(const Tensor& t) {
    Ids v(t.numel());
    ops->to_host(t, v.data());
    return v;
  }
};

// ---- memory ----

TEST_F(CpuOpsTest, UploadWeightConvertsHalfTypesToF32) {
  const Vec values = {1.5f, -2.25f, 0.125f, 3.0f, -0.5f, 96.0f};  // exact in f16 and bf16
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    Tensor host = host_tensor(dt, {2, 3});
    for (size_t i = 0; i < values.size(); ++i) {
      if (dt == DType::F32) host.as<float>()[i] = values[i];
      if (dt == DType::F16) host.as<uint16_t>()[i] = float_to_f16(values[i]);
      if (dt == DType::BF16) host.as<uint16_t>()[i] = float_to_bf16(values[i]);
    }
    Tensor w = ops->upload_weight(host);
    EXPECT_EQ(w.dtype, DType::F32);
    EXPECT_EQ(w.shape, host.shape);
    EXPECT_EQ(download(w), values) << dtype_name(dt);
  }
  EXPECT_THROW(ops->upload_weight(host_tensor(DType::I64, {2})), Error);
}

TEST_F(CpuOpsTest, AllocCopyAndTemps) {
  const Vec v = normal(12);
  Tensor a = upload(v, {3, 4});
  Tensor b = ops->alloc(DType::F32, {3, 4});
  ops->copy(a, b);
  EXPECT_EQ(download(b), v);
  ops->fill_zero(b);
  EXPECT_EQ(download(b), Vec(12, 0.0f));

  Tensor t1 = ops->temp(DType::F32, {5, 7});
  Tensor t2 = ops->temp(DType::I32, {3});
  EXPECT_EQ(t1.shape, (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(t2.dtype, DType::I32);
  EXPECT_NE(t1.data, t2.data);
  ops->copy_from_host(t1, normal(35).data());  // writable end to end
  ops->reset_temps();
  Tensor empty = ops->temp(DType::I32, {0});
  EXPECT_EQ(empty.numel(), 0);
}

TEST_F(CpuOpsTest, CopyColumnsPlacesABlockOfAWiderMatrix) {
  const int64_t rows = 3, width = 4, total = 10, col = 5;
  for (int64_t copied : {width, width - 1, int64_t{0}}) {  // a padded slice gives its first columns
    const Vec block = normal(rows * width), before = normal(rows * total);
    Tensor dst = upload(before, {rows, total});
    ops->copy_columns(upload(block, {rows, width}), copied, dst, col);
    Vec want = before;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < copied; ++c) want[r * total + col + c] = block[r * width + c];
    EXPECT_EQ(download(dst), want) << copied << " columns";
  }
}

TEST_F(CpuOpsTest, TempReleaseKeepsTemporariesBeforeTheMark) {
  const Vec v = normal(16);
  Tensor kept = ops->temp(DType::F32, {16});
  ops->copy_from_host(kept, v.data());
  const size_t mark = ops->temp_mark();
  for (int layer = 0; layer < 3; ++layer) {
    Tensor scratch = ops->temp(DType::F32, {1024});
    ops->fill_zero(scratch);
    EXPECT_EQ(ops->temp_mark(), mark + 1);
    ops->temp_release(mark);
    EXPECT_EQ(ops->temp_mark(), mark);
  }
  EXPECT_EQ(download(kept), v);
  EXPECT_THROW(ops->temp_release(mark + 1), Error);
}

TEST_F(CpuOpsTest, UploadBatchCopiesEveryVector) {
  BatchLayout b;
  b.num_tokens = 4;
  b.num_seqs = 2;
  b.max_blocks_per_seq = 2;
  b.block_size = 16;
  b.token_ids = {5, 9, 2, 7};
  b.positions = {0, 1, 2, 17};
  b.slot_mapping = {48, 49, 50, 17};
  b.query_start = {0, 3, 4};
  b.kv_lens = {3, 18};
  b.block_tables = {3, 0, 2, 1};
  b.logit_rows = {2, 3};
  BatchTensors t = ops->upload_batch(b);
  EXPECT_EQ(t.num_tokens, 4);
  EXPECT_EQ(t.num_seqs, 2);
  EXPECT_EQ(t.max_blocks_per_seq, 2);
  EXPECT_EQ(t.block_size, 16);
  EXPECT_EQ(t.max_kv_len, 18);
  EXPECT_EQ(download_ids(t.token_ids), b.token_ids);
  EXPECT_EQ(download_ids(t.positions), b.positions);
  EXPECT_EQ(download_ids(t.slot_mapping), b.slot_mapping);
  EXPECT_EQ(download_ids(t.query_start), b.query_start);
  EXPECT_EQ(download_ids(t.kv_lens), b.kv_lens);
  EXPECT_EQ(download_ids(t.block_tables), b.block_tables);
  EXPECT_EQ(download_ids(t.logit_rows), b.logit_rows);

  b.kv_lens.pop_back();  // inconsistent layout: a bug in the caller
  EXPECT_THROW(ops->upload_batch(b), Error);
}

TEST_F(CpuOpsTest, BatchArraysShareOneAlignedBuffer) {
  // Odd counts: 3 tokens (2 of them real), 2 sequences of 5 blocks each, 1 logit row; every
  // array starts at a multiple of kAlign and the padding between them is zero.
  const BatchArrays arrays(3, 2, 5, 1);
  constexpr int64_t a = BatchArrays::kAlign;
  EXPECT_EQ(arrays.total(), 8 * a);  // each array fits in one aligned run here
  const std::vector<int32_t> ids = {11, 12, 13}, pos = {1, 2, 3}, slots = {7, 8, 9}, qs = {0, 2, 3},
                             lens = {4, 40}, tables = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, rows = {2}, valid = {2};
  const std::vector<int32_t> packed = arrays.pack(
      {ids.data(), pos.data(), slots.data(), qs.data(), lens.data(), tables.data(), rows.data(), valid.data()});
  ASSERT_EQ(static_cast<int64_t>(packed.size()), arrays.total());
  EXPECT_EQ(packed[0], 11);
  EXPECT_EQ(packed[3], 0);  // padding after token_ids
  EXPECT_EQ(packed[a], 1);
  EXPECT_EQ(packed[5 * a + 9], 10);
  EXPECT_EQ(packed[6 * a], 2);
  EXPECT_EQ(packed[7 * a], 2);
  // Filling the arrays in place through views gives the same buffer.
  std::vector<int32_t> in_place(static_cast<size_t>(arrays.total()), 0);
  const std::array<int32_t*, 8> at = arrays.views(in_place);
  const std::array<const std::vector<int32_t>*, 8> sources = {&ids, &pos, &slots, &qs, &lens, &tables, &rows, &valid};
  for (size_t i = 0; i < at.size(); ++i) std::copy(sources[i]->begin(), sources[i]->end(), at[i]);
  EXPECT_EQ(in_place, packed);
  std::vector<int32_t> short_buffer(static_cast<size_t>(arrays.total() - 1));
  EXPECT_THROW(arrays.views(short_buffer), Error);

  Tensor buffer = ops->alloc(DType::I32, {arrays.total()});
  ops->copy_from_host(buffer, packed.data());
  BatchTensors t;
  arrays.bind(buffer, t);
  EXPECT_EQ(download_ids(t.token_ids), ids);
  EXPECT_EQ(download_ids(t.positions), pos);
  EXPECT_EQ(download_ids(t.slot_mapping), slots);
  EXPECT_EQ(download_ids(t.query_start), qs);
  EXPECT_EQ(download_ids(t.kv_lens), lens);
  EXPECT_EQ(download_ids(t.block_tables), tables);
  EXPECT_EQ(download_ids(t.logit_rows), rows);
  EXPECT_EQ(download_ids(t.valid_tokens), valid);
  for (const Tensor* v : {&t.positions, &t.block_tables, &t.logit_rows})
    EXPECT_EQ((static_cast<const int32_t*>(v->data) - static_cast<const int32_t*>(buffer.data)) % a, 0);
  // Larger than one aligned run: 40 tokens take two.
  EXPECT_EQ(BatchArrays(40, 1, 1, 1).total(), (2 + 2 + 2 + 1 + 1 + 1 + 1 + 1) * a);
  Tensor small = ops->alloc(DType::I32, {arrays.total() - 1});
  EXPECT_THROW(arrays.bind(small, t), Error);
}

// ---- dense math ----

TEST_F(CpuOpsTest, EmbedCopiesRowsAndRejectsBadIds) {
  const int64_t vocab = 11, h = 8;
  const Vec table = normal(vocab * h);
  const Ids ids = {3, 0, 10, 3, 7};
  Tensor out = zeros({5, h});
  ops->embed(upload(ids, {5}), upload(table, {vocab, h}), out);
  const Vec got = download(out);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t c = 0; c < h; ++c) EXPECT_EQ(got[t * h + c], table[ids[t] * h + c]);
  EXPECT_THROW(ops->embed(upload(Ids{11}, {1}), upload(table, {vocab, h}), out), Error);
  EXPECT_THROW(ops->embed(upload(Ids{-1}, {1}), upload(table, {vocab, h}), out), Error);
}

TEST_F(CpuOpsTest, RmsNormMatchesReference) {
  // A plain [rows, cols] norm, a per-head norm (x viewed as [tokens * heads, head_dim]), and
  // inputs small enough for eps to matter.
  struct Case {
    int64_t rows, cols, width;
    float stddev, eps;
  };
  for (const Case& c : {Case{5, 48, 48, 3.0f, 1e-6f}, Case{3, 64, 16, 1.0f, 1e-6f}, Case{4, 32, 32, 2e-3f, 1e-5f}}) {
    const int64_t rows = c.rows, cols = c.cols, width = c.width;
    const float eps = c.eps;
    const Vec x = normal(rows * cols, c.stddev), w = normal(width);
    Tensor out = zeros({rows, cols});
    ops->rmsnorm(upload(x, {rows, cols}), upload(w, {width}), eps, out);
    expect_close(download(out), ref_rmsnorm(to_ref(x), w, eps), 1e-5);
  }
}

TEST_F(CpuOpsTest, AddRmsNormUpdatesResidualAndNormalises) {
  const int64_t rows = 6, cols = 40;
  const float eps = 1e-5f;
  const Vec res = normal(rows * cols), delta = normal(rows * cols), w = normal(cols);
  Tensor residual = upload(res, {rows, cols});
  Tensor out = zeros({rows, cols});
  ops->add_rmsnorm(residual, upload(delta, {rows, cols}), upload(w, {cols}), eps, out);
  Ref sum(rows * cols);
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = static_cast<double>(res[i]) + delta[i];
  expect_close(download(residual), sum, 1e-6);
  expect_close(download(out), ref_rmsnorm(sum, w, eps), 1e-5);
}

TEST_F(CpuOpsTest, ShardedRmsNormEqualsFullNorm) {
  // A row of 48 columns split over two tensor-parallel shards of 20 and 28 columns.
  const int64_t rows = 5, cols = 48, split = 20;
  const float eps = 1e-6f;
  const Vec x = normal(rows * cols, 2.0f), w = normal(cols);
  const Ref want = ref_rmsnorm(to_ref(x), w, eps);
  std::vector<Tensor> shards, shard_w;
  Tensor total = zeros({rows});
  for (auto [c0, width] : {std::pair<int64_t, int64_t>{0, split}, {split, cols - split}}) {
    Vec xs, ws(w.begin() + c0, w.begin() + c0 + width);
    for (int64_t r = 0; r < rows; ++r) xs.insert(xs.end(), x.begin() + r * cols + c0, x.begin() + r * cols + c0 + width);
    shards.push_back(upload(xs, {rows, width}));
    shard_w.push_back(upload(ws, {width}));
    Tensor part = zeros({rows});
    ops->row_sumsq(shards.back(), part);
    ops->add_inplace(total, part);  // what the all-reduce does
  }
  Ref full_sumsq(rows, 0.0);
  for (int64_t i = 0; i < rows * cols; ++i) full_sumsq[i / cols] += static_cast<double>(x[i]) * x[i];
  expect_close(download(total), full_sumsq, 1e-6);
  for (size_t s = 0; s < shards.size(); ++s) {
    const int64_t c0 = s == 0 ? 0 : split, width = shards[s].cols();
    Tensor out = zeros({rows, width});
    ops->rmsnorm_with_sumsq(shards[s], total, cols, shard_w[s], eps, out);
    Ref want_shard;
    for (int64_t r = 0; r < rows; ++r)
      want_shard.insert(want_shard.end(), want.begin() + r * cols + c0, want.begin() + r * cols + c0 + width);
    expect_close(download(out), want_shard, 1e-5);
  }
}

TEST_F(CpuOpsTest, LinearMatchesReference) {
  // Odd sizes (vector tails), and one large enough to run on several threads.
  for (auto [rows, k, n] : {std::tuple<int64_t, int64_t, int64_t>{5, 37, 19}, {1, 64, 7}, {33, 256, 300}}) {
    const Vec x = normal(rows * k), w = normal(n * k, 0.1f), bias = normal(n);
    Tensor out = zeros({rows, n});
    ops->linear(upload(x, {rows, k}), upload(w, {n, k}), nullptr, out);
    expect_close(download(out), ref_linear(x, w, nullptr, rows, k, n), 1e-5);
    Tensor b = upload(bias, {n});
    ops->linear(upload(x, {rows, k}), upload(w, {n, k}), &b, out);
    expect_close(download(out), ref_linear(x, w, &bias, rows, k, n), 1e-5);
  }
  Tensor out = zeros({2, 3});
  EXPECT_THROW(ops->linear(upload(normal(8), {2, 4}), upload(normal(15), {3, 5}), nullptr, out), Error);
}

TEST_F(CpuOpsTest, ElementwiseAddAndClamp) {
  const Vec a = normal(30, 4.0f), b = normal(30, 4.0f);
  Tensor acc = upload(a, {5, 6});
  ops->add_inplace(acc, upload(b, {5, 6}));
  Ref sum(30);
  for (size_t i = 0; i < 30; ++i) sum[i] = static_cast<double>(a[i]) + b[i];
  expect_close(download(acc), sum, 1e-6);

  Tensor x = upload(a, {5, 6});
  ops->clamp_inplace(x, 2.5f);
  const Vec got = download(x);
  for (size_t i = 0; i < 30; ++i) EXPECT_EQ(got[i], std::min(2.5f, std::max(-2.5f, a[i])));
}

// Rotate-half rope; the angle is Hugging Face's float32 one (that rounding is the definition:
// at position 4000 a double angle would differ by ~1e-4), the rotation is in double.
Ref ref_rope(const Vec& x, const Ids& positions, int64_t head_dim, double theta) {
  const int64_t cols = x.size() / positions.size(), half = head_dim / 2;
  Ref out(x.size());
  for (size_t t = 0; t < positions.size(); ++t)
    for (int64_t h = 0; h < cols / head_dim; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const float inv_freq = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / head_dim);
        const double angle = static_cast<float>(positions[t]) * inv_freq;
        const size_t lo = t * cols + h * head_dim + i, hi = lo + half;
        out[lo] = x[lo] * std::cos(angle) - x[hi] * std::sin(angle);
        out[hi] = x[hi] * std::cos(angle) + x[lo] * std::sin(angle);
      }
  return out;
}

TEST_F(CpuOpsTest, RopeMatchesReference) {
  const int64_t tokens = 7, nq = 4, nk = 2;
  for (double theta : {10000.0, 1000000.0})
    for (int64_t hd : {16, 32, 64}) {
      SCOPED_TRACE("theta " + std::to_string(theta) + " head_dim " + std::to_string(hd));
      Ids pos(tokens);
      for (auto& p : pos) p = uniform_int(0, 5000);
      const Vec q = normal(tokens * nq * hd), k = normal(tokens * nk * hd);
      Tensor qt = upload(q, {tokens, nq * hd}), kt = upload(k, {tokens, nk * hd});
      ops->rope(qt, kt, upload(pos, {tokens}), hd, theta);
      expect_close(download(qt), ref_rope(q, pos, hd, theta), 1e-5);
      expect_close(download(kt), ref_rope(k, pos, hd, theta), 1e-5);
    }
}

TEST_F(CpuOpsTest, RopeKnownRotations) {
  // Position 0 is the identity; with head_dim 2 the frequency is 1, so position p rotates the
  // pair (x0, x1) by p radians.
  const Vec q = {0.6f, -1.3f, 0.6f, -1.3f}, k = {2.0f, 0.5f, 2.0f, 0.5f};
  Tensor qt = upload(q, {2, 2}), kt = upload(k, {2, 2});
  ops->rope(qt, kt, upload(Ids{0, 3}, {2}), 2, 10000.0);
  const Vec gq = download(qt), gk = download(kt);
  EXPECT_EQ(gq[0], q[0]);
  EXPECT_EQ(gq[1], q[1]);
  EXPECT_EQ(gk[0], k[0]);
  EXPECT_EQ(gk[1], k[1]);
  EXPECT_NEAR(gq[2], 0.6 * std::cos(3.0) + 1.3 * std::sin(3.0), 1e-6);
  EXPECT_NEAR(gq[3], -1.3 * std::cos(3.0) + 0.6 * std::sin(3.0), 1e-6);
  EXPECT_NEAR(gk[2], 2.0 * std::cos(3.0) - 0.5 * std::sin(3.0), 1e-6);
  EXPECT_NEAR(gk[3], 0.5 * std::cos(3.0) + 2.0 * std::sin(3.0), 1e-6);
}

// ---- attention over the paged cache ----

struct SeqSpec {
  int cached;  // tokens already in the cache before the step
  int fresh;   // tokens this step adds
};

// A step over mixed sequences: prefill (cached 0), decode (fresh 1), chunked prefill, and a
// one-token prompt; blocks are handed out in shuffled order.
struct PagedStep {
  BatchLayout layout;
  int64_t num_blocks = 0;
  std::vector<std::vector<int32_t>> token_slots;  // [seq][token j] -> cache slot

  PagedStep(const std::vector<SeqSpec>& seqs, int64_t block_size, std::mt19937& rng) {
    int64_t max_blocks = 0, blocks_needed = 0;
    for (const auto& s : seqs) {
      const int64_t blocks = (s.cached + s.fresh + block_size - 1) / block_size;
      max_blocks = std::max(max_blocks, blocks);
      blocks_needed += blocks;
    }
    num_blocks = blocks_needed + 3;  // some blocks belong to no sequence
    std::vector<int32_t> free_blocks(num_blocks);
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), rng);

    BatchLayout& b = layout;
    b.num_seqs = static_cast<int64_t>(seqs.size());
    b.block_size = block_size;
    b.max_blocks_per_seq = max_blocks;
    b.block_tables.assign(b.num_seqs * max_blocks, -1);
    b.query_start = {0};
    size_t next_block = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      const int total = seqs[s].cached + seqs[s].fresh;
      token_slots.emplace_back();
      for (int j = 0; j < total; ++j) {
        if (j % block_size == 0) b.block_tables[s * max_blocks + j / block_size] = free_blocks[next_block++];
        const int32_t slot = b.block_tables[s * max_blocks + j / block_size] * block_size + j % block_size;
        token_slots.back().push_back(slot);
        if (j >= seqs[s].cached) {
          b.token_ids.push_back(j);
          b.positions.push_back(j);
          b.slot_mapping.push_back(slot);
        }
      }
      b.query_start.push_back(static_cast<int32_t>(b.token_ids.size()));
      b.kv_lens.push_back(total);
      b.logit_rows.push_back(b.query_start.back() - 1);
    }
    b.num_tokens = static_cast<int64_t>(b.token_ids.size());
  }
};

// Causal softmax attention in double, from K/V given per sequence and token.
Ref ref_attention(const Vec& q, const PagedStep& step, const Vec& k_cache, const Vec& v_cache,
                  int64_t nq, int64_t nk, int64_t hd, double scale) {
  const BatchLayout& b = step.layout;
  Ref out(q.size());
  for (int64_t s = 0; s < b.num_seqs; ++s)
    for (int32_t row = b.query_start[s]; row < b.query_start[s + 1]; ++row)
      for (int64_t h = 0; h < nq; ++h) {
        const int64_t kvh = h / (nq / nk);
        const int n = b.positions[row] + 1;
        Ref scores(n);
        for (int j = 0; j < n; ++j) {
          double dotp = 0.0;
          for (int64_t d = 0; d < hd; ++d)
            dotp += static_cast<double>(q[(row * nq + h) * hd + d]) *
                    k_cache[(step.token_slots[s][j] * nk + kvh) * hd + d];
          scores[j] = dotp * scale;
        }
        const double mx = *std::max_element(scores.begin(), scores.end());
        double sum = 0.0;
        for (double& x : scores) sum += x = std::exp(x - mx);
        for (int64_t d = 0; d < hd; ++d) {
          double acc = 0.0;
          for (int j = 0; j < n; ++j) acc += scores[j] / sum * v_cache[(step.token_slots[s][j] * nk + kvh) * hd + d];
          out[(row * nq + h) * hd + d] = acc;
        }
      }
  return out;
}

TEST_F(CpuOpsTest, PagedAttentionMatchesReference) {
  const std::vector<SeqSpec> seqs = {{0, 5}, {7, 1}, {0, 1}, {20, 3}, {33, 1}, {2, 9}, {uniform_int(1, 40), 1}};
  for (auto [nq, nk] : {std::pair<int64_t, int64_t>{4, 4}, {4, 2}, {8, 2}})
    for (int64_t hd : {16, 32, 64}) {
      SCOPED_TRACE("heads " + std::to_string(nq) + "/" + std::to_string(nk) + " head_dim " + std::to_string(hd));
      const PagedStep step(seqs, 4, rng);
      const BatchLayout& b = step.layout;
      const int64_t row = nk * hd, slots = step.num_blocks * b.block_size;
      // The cache starts full of random values: those at earlier tokens' slots are their K/V.
      Vec k_cache = normal(slots * row), v_cache = normal(slots * row);
      const Vec k_new = normal(b.num_tokens * row), v_new = normal(b.num_tokens * row);
      const Vec q = normal(b.num_tokens * nq * hd);
      KvCache cache{upload(k_cache, {step.num_blocks, b.block_size, nk, hd}),
                    upload(v_cache, {step.num_blocks, b.block_size, nk, hd})};
      const BatchTensors batch = ops->upload_batch(b);
      ops->kv_append(upload(k_new, {b.num_tokens, row}), upload(v_new, {b.num_tokens, row}), cache, batch);

      for (int64_t t = 0; t < b.num_tokens; ++t)
        for (int64_t i = 0; i < row; ++i) {
          k_cache[b.slot_mapping[t] * row + i] = k_new[t * row + i];
          v_cache[b.slot_mapping[t] * row + i] = v_new[t * row + i];
        }
      EXPECT_EQ(download(cache.k), k_cache) << "kv_append must write exactly the step's slots";
      EXPECT_EQ(download(cache.v), v_cache);

      Tensor out = zeros({b.num_tokens, nq * hd});
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      ops->attention(upload(q, {b.num_tokens, nq * hd}), cache, batch, nq, nk, hd, scale, out);
      expect_close(download(out), ref_attention(q, step, k_cache, v_cache, nq, nk, hd, scale), 1e-5);
      ops->reset_temps();
    }
}

TEST_F(CpuOpsTest, AttentionReportsBadLayoutFromWorkerThreads) {
  // One 64-token prefill: enough work to run on several threads; the last query claims a
  // position beyond the cache, which an internal check must report as an Error, not a crash.
  const int64_t nq = 4, nk = 4, hd = 64;
  PagedStep step({{0, 64}}, 16, rng);
  step.layout.positions.back() = 64;
  const BatchLayout& b = step.layout;
  KvCache cache{upload(normal(step.num_blocks * 16 * nk * hd), {step.num_blocks, 16, nk, hd}),
                upload(normal(step.num_blocks * 16 * nk * hd), {step.num_blocks, 16, nk, hd})};
  Tensor out = zeros({b.num_tokens, nq * hd});
  EXPECT_THROW(ops->attention(upload(normal(b.num_tokens * nq * hd), {b.num_tokens, nq * hd}), cache,
                              ops->upload_batch(b), nq, nk, hd, 0.125f, out),
               Error);
}

// ---- mixture of experts ----

TEST_F(CpuOpsTest, RouterTopkMatchesReference) {
  const int64_t tokens = 16, experts = 8;
  const Vec logits = normal(tokens * experts, 2.0f);
  for (int64_t k : {1, 2, 8})
    for (bool renorm : {false, true}) {
      SCOPED_TRACE("k " + std::to_string(k) + (renorm ? " renormalised" : ""));
      Tensor ids = zeros({tokens, k}, DType::I32), weights = zeros({tokens, k});
      ops->router_topk(upload(logits, {tokens, experts}), k, renorm, ids, weights);
      const Ids got_ids = download_ids(ids);
      Ref want_w;
      for (int64_t t = 0; t < tokens; ++t) {
        Ref p(experts);
        double mx = -INFINITY, sum = 0.0;
        for (int64_t e = 0; e < experts; ++e) mx = std::max(mx, static_cast<double>(logits[t * experts + e]));
        for (int64_t e = 0; e < experts; ++e) sum += p[e] = std::exp(logits[t * experts + e] - mx);
        Ids order(experts);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
        double kept = 0.0;
        for (int64_t j = 0; j < k; ++j) kept += p[order[j]];
        for (int64_t j = 0; j < k; ++j) {
          EXPECT_EQ(got_ids[t * k + j], order[j]) << "token " << t << " slot " << j;
          want_w.push_back(p[order[j]] / (renorm ? kept : sum));
        }
      }
      expect_close(download(weights), want_w, 1e-6);
    }
}

// A recorded step's padding rows (at or past valid_tokens) route to no expert: ids -1, weights
// 0; the real rows as without it. valid_tokens of 0, of some, of all and past the rows.
TEST_F(CpuOpsTest, RouterTopkSendsPaddingRowsToNoExpert) {
  const int64_t tokens = 7, experts = 6, k = 2;
  const Vec logits = normal(tokens * experts, 2.0f);
  Tensor all_ids = zeros({tokens, k}, DType::I32), all_w = zeros({tokens, k});
  ops->router_topk(upload(logits, {tokens, experts}), k, true, all_ids, all_w);
  const Ids want_ids = download_ids(all_ids);
  const Vec want_w = download(all_w);
  for (const int32_t valid : {0, 3, 7, 9}) {
    SCOPED_TRACE("valid " + std::to_string(valid));
    Tensor count = zeros({1}, DType::I32);
    ops->copy_from_host(count, &valid);
    Tensor ids = zeros({tokens, k}, DType::I32), weights = zeros({tokens, k});
    ops->router_topk(upload(logits, {tokens, experts}), k, true, ids, weights, count);
    const Ids got_ids = download_ids(ids);
    const Vec got_w = download(weights);
    for (int64_t s = 0; s < tokens * k; ++s) {
      const bool real = s / k < valid;
      EXPECT_EQ(got_ids[s], real ? want_ids[s] : -1) << "slot " << s;
      EXPECT_EQ(got_w[s], real ? want_w[s] : 0.0f) << "slot " << s;
    }
  }
  // The count is one I32.
  Tensor wide = zeros({2}, DType::I32), ids = zeros({tokens, k}, DType::I32), weights = zeros({tokens, k});
  EXPECT_THROW(ops->router_topk(upload(logits, {tokens, experts}), k, true, ids, weights, wide), Error);
}

TEST_F(CpuOpsTest, RouterTopkBreaksTiesByLowerExpert) {
  Tensor ids = zeros({1, 5}, DType::I32), weights = zeros({1, 5});
  ops->router_topk(upload(Vec{1.0f, 3.0f, 3.0f, 0.0f, 3.0f}, {1, 5}), 5, false, ids, weights);
  EXPECT_EQ(download_ids(ids), (Ids{1, 2, 4, 0, 3}));
}

TEST_F(CpuOpsTest, MoeExpertsUsesOnlyLocalExperts) {
  // Experts 3, 4, 5 of 8 live here; token 0 routes to two local experts, token 1 to none.
  const int64_t tokens = 9, k = 2, h = 24, inter = 16, first = 3, local = 3, global_experts = 8;
  Ids ids;
  for (int64_t t = 0; t < tokens; ++t) {
    Ids all(global_experts);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    ids.insert(ids.end(), all.begin(), all.begin() + k);
  }
  ids[0] = 5, ids[1] = 3, ids[2] = 0, ids[3] = 7;
  Vec w(tokens * k);
  for (float& x : w) x = std::uniform_real_distribution<float>(0.05f, 1.0f)(rng);
  const Vec x = normal(tokens * h), gate_up = normal(local * 2 * inter * h, 0.2f),
            down = normal(local * h * inter, 0.2f);
  ExpertWeights experts{first, local, upload(gate_up, {local, 2 * inter, h}), upload(down, {local, h, inter})};
  Tensor out = upload(Vec(tokens * h, 1e3f), {tokens, h});  // overwritten, not accumulated
  ops->moe_experts(upload(x, {tokens, h}), upload(ids, {tokens, k}), upload(w, {tokens, k}), experts, out);

  Ref want(tokens * h, 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = ids[t * k + j] - first;
      if (e < 0 || e >= local) continue;
      const Vec xt(x.begin() + t * h, x.begin() + (t + 1) * h);
      const Ref y = ref_swiglu(xt, &gate_up[e * 2 * inter * h], &down[e * h * inter], 1, h, inter);
      for (int64_t c = 0; c < h; ++c) want[t * h + c] += w[t * k + j] * y[c];
    }
  const Vec got = download(out);
  for (int64_t c = 0; c < h; ++c) EXPECT_EQ(got[1 * h + c], 0.0f) << "token 1 has no local expert";
  expect_close(got, want, 1e-5);
}

TEST_F(CpuOpsTest, MoeExpertsCountsServedIdsWhenAsked) {
  // Experts 2..3 of 6 live here; every id in [0, 6) is counted, local or not, padding (-1) not.
  const int64_t tokens = 3, k = 2, h = 8, inter = 8;
  const Ids ids = {2, 5, 3, 0, -1, 2};
  ExpertWeights experts{2, 2, upload(normal(2 * 2 * inter * h, 0.2f), {2, 2 * inter, h}),
                        upload(normal(2 * h * inter, 0.2f), {2, h, inter})};
  Tensor served = zeros({6}, DType::I64);
  ops->copy_from_host(served, std::vector<int64_t>{1, 1, 1, 1, 1, 1}.data());
  Tensor out = zeros({tokens, h}), plain = zeros({tokens, h});
  const Tensor x = upload(normal(tokens * h), {tokens, h}), id = upload(ids, {tokens, k}),
               w = upload(Vec(tokens * k, 0.5f), {tokens, k});
  ops->moe_experts(x, id, w, experts, out, -1, &served);
  ops->moe_experts(x, id, w, experts, plain);
  std::vector<int64_t> counts(6);
  ops->to_host(served, counts.data());
  EXPECT_EQ(counts, (std::vector<int64_t>{2, 1, 3, 2, 1, 2}));
  EXPECT_EQ(download(out), download(plain));
  Tensor wrong = zeros({6}, DType::I32);
  try {
    ops->moe_experts(x, id, w, experts, out, -1, &wrong);
    FAIL() << "an I32 served was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("served"), std::string::npos) << e.what();
  }
}

TEST_F(CpuOpsTest, SwigluMlpMatchesReference) {
  const int64_t rows = 6, h = 20, inter = 12;
  const Vec x = normal(rows * h), gate_up = normal(2 * inter * h, 0.3f), down = normal(h * inter, 0.3f);
  Tensor out = zeros({rows, h});
  ops->swiglu_mlp(upload(x, {rows, h}), upload(gate_up, {2 * inter, h}), upload(down, {h, inter}), out);
  expect_close(download(out), ref_swiglu(x, gate_up.data(), down.data(), rows, h, inter), 1e-5);
}

TEST_F(CpuOpsTest, AddSigmoidGatedMatchesReference) {
  const int64_t rows = 5, h = 19;
  const Vec acc0 = normal(rows * h), x = normal(rows * h), gate = normal(h, 0.5f), y = normal(rows * h);
  Tensor acc = upload(acc0, {rows, h});
  ops->add_sigmoid_gated(acc, upload(x, {rows, h}), upload(gate, {1, h}), upload(y, {rows, h}));
  Ref want(rows * h);
  for (int64_t r = 0; r < rows; ++r) {
    double z = 0.0;
    for (int64_t c = 0; c < h; ++c) z += static_cast<double>(x[r * h + c]) * gate[c];
    const double g = 1.0 / (1.0 + std::exp(-z));
    for (int64_t c = 0; c < h; ++c) want[r * h + c] = acc0[r * h + c] + g * y[r * h + c];
  }
  expect_close(download(acc), want, 1e-5);
}

TEST_F(CpuOpsTest, GatherAndScatterAddRows) {
  const int64_t rows = 6, cols = 5;
  const Vec x = normal(rows * cols);
  const Ids picks = {4, 0, 4, 2, -1};  // -1: a zero row, and nothing added back
  Tensor gathered = zeros({5, cols});
  ops->gather_rows(upload(x, {rows, cols}), upload(picks, {5}), gathered);
  const Vec g = download(gathered);
  for (size_t i = 0; i < picks.size(); ++i)
    for (int64_t c = 0; c < cols; ++c)
      EXPECT_EQ(g[i * cols + c], picks[i] < 0 ? 0.0f : x[picks[i] * cols + c]);

  Vec moved = normal(5 * cols);
  const Vec acc0 = normal(rows * cols), scale = {0.5f, -1.5f, 2.0f, 0.25f, 3.0f};
  Tensor acc = upload(acc0, {rows, cols});
  ops->scatter_add_rows(acc, upload(moved, {5, cols}), upload(picks, {5}), upload(scale, {5}));  // row 4 twice
  Ref want = to_ref(acc0);
  for (size_t i = 0; i + 1 < picks.size(); ++i)
    for (int64_t c = 0; c < cols; ++c) want[picks[i] * cols + c] += scale[i] * moved[i * cols + c];
  expect_close(download(acc), want, 1e-6);
}

// The fixed-capacity expert dispatch: 4 experts in 2 sets of 2, each set held by 2 shards, so 4
// destinations (set * 2 + shard); tokens [1, 3) of 4, top-2, 3 entries per destination.
TEST_F(CpuOpsTest, PackDispatchFillsEachDestinationInSlotOrder) {
  const Ids ids = {0, 1, /*t1*/ 3, 0, /*t2*/ 2, 3, /*t3*/ 1, 2};
  const Vec w = {0.9f, 0.1f, 0.6f, 0.4f, 0.7f, 0.3f, 0.8f, 0.2f};
  const int64_t capacity = 3, entries = 4 * capacity;
  Tensor rows = zeros({entries}, DType::I32), experts = zeros({entries, 1}, DType::I32);
  Tensor scales = zeros({entries});
  ops->pack_dispatch(upload(ids, {4, 2}), upload(w, {4, 2}), 1, 3, 2, 2, capacity, rows, experts,
                     scales);
  // Set 0 (experts 0, 1) gets slot (1, 1); set 1 (experts 2, 3) gets (1, 0), (2, 0), (2, 1).
  const Ids set0_rows = {1, -1, -1}, set0_experts = {0, -1, -1};
  const Ids set1_rows = {1, 2, 2}, set1_experts = {3, 2, 3};
  const Vec set0_scales = {0.4f, 0.0f, 0.0f}, set1_scales = {0.6f, 0.7f, 0.3f};
  Ids want_rows, want_experts;
  Vec want_scales;
  for (int shard = 0; shard < 2; ++shard) {  // destinations 0, 1: set 0
    want_rows.insert(want_rows.end(), set0_rows.begin(), set0_rows.end());
    want_experts.insert(want_experts.end(), set0_experts.begin(), set0_experts.end());
    want_scales.insert(want_scales.end(), set0_scales.begin(), set0_scales.end());
  }
  for (int shard = 0; shard < 2; ++shard) {  // destinations 2, 3: set 1
    want_rows.insert(want_rows.end(), set1_rows.begin(), set1_rows.end());
    want_experts.insert(want_experts.end(), set1_experts.begin(), set1_experts.end());
    want_scales.insert(want_scales.end(), set1_scales.begin(), set1_scales.end());
  }
  EXPECT_EQ(download_ids(rows), want_rows);
  EXPECT_EQ(download_ids(experts), want_experts);
  EXPECT_EQ(download(scales), want_scales);

  // A capacity too small for the slots is an error, not a silent drop.
  Tensor r2 = zeros({8}, DType::I32), e2 = zeros({8, 1}, DType::I32), s2 = zeros({8});
  EXPECT_THROW(ops->pack_dispatch(upload(ids, {4, 2}), upload(w, {4, 2}), 1, 3, 2, 2, 2, r2, e2, s2),
               Error);
  // A recorded step's padding rows (ids -1, router_topk past valid_tokens) are sent nowhere: with
  // token 2 padding, set 1 gets only (1, 0); set 0 as before.
  Ids padded = ids;
  padded[4] = padded[5] = -1;
  Tensor pr = zeros({entries}, DType::I32), pe = zeros({entries, 1}, DType::I32), ps = zeros({entries});
  ops->pack_dispatch(upload(padded, {4, 2}), upload(w, {4, 2}), 1, 3, 2, 2, capacity, pr, pe, ps);
  const Ids got = download_ids(pe);
  EXPECT_EQ(Ids(got.begin(), got.begin() + 3), set0_experts);
  EXPECT_EQ(Ids(got.begin() + 6, got.begin() + 9), (Ids{3, -1, -1}));
}

// Rank emulation's one call for every peer gives each peer's block exactly as the per-peer path
// did (route_to_replicas with the peer's table, pack_dispatch of its tp share, the destination's
// block): random top-k ids, three distinct random copy tables over four replicas, tp shares that
// do not divide the tokens evenly, sharded sets, every destination.
TEST_F(CpuOpsTest, PackFromPeersGivesThePerPeerBlocks) {
  struct Layout { int64_t experts, k, sets, spare, shards, tp; };
  for (const Layout& l : {Layout{8, 2, 2, 1, 1, 1}, Layout{12, 4, 3, 2, 2, 3}, Layout{16, 8, 4, 3, 1, 2}}) {
    const int64_t own = l.experts / l.sets, width = own + l.spare, cols = 2 + l.sets * l.spare;
    const int64_t dp = 4, distinct = 3, peers = dp * l.tp, destinations = l.sets * l.shards;
    // Tables: each expert's home slot, the spare slots given to random experts of other sets,
    // each row's copies rotated at random.
    std::vector<Ids> tables(distinct, Ids(static_cast<size_t>(l.experts * cols), -1));
    for (Ids& table : tables) {
      std::vector<Ids> copies(static_cast<size_t>(l.experts));
      for (int64_t e = 0; e < l.experts; ++e) copies[e].push_back(static_cast<int32_t>(e / own * width + e % own));
      for (int64_t set = 0; set < l.sets; ++set)
        for (int64_t n = 0; n < l.spare; ++n) {
          const int64_t e = (set * own + uniform_int(own, static_cast<int>(l.experts) - 1)) % l.experts;
          copies[e].push_back(static_cast<int32_t>(set * width + own + n));
        }
      for (int64_t e = 0; e < l.experts; ++e) {
        std::rotate(copies[e].begin(), copies[e].begin() + uniform_int(0, static_cast<int>(copies[e].size()) - 1),
                    copies[e].end());
        table[e * cols] = static_cast<int32_t>(copies[e].size());
        std::copy(copies[e].begin(), copies[e].end(), table.begin() + e * cols + 1);
      }
    }
    Ids stacked, senders;
    for (const Ids& table : tables) stacked.insert(stacked.end(), table.begin(), table.end());
    for (int64_t d = 0; d < dp; ++d)
      for (int64_t t = 0; t < l.tp; ++t) senders.insert(senders.end(), {static_cast<int32_t>(d % distinct), static_cast<int32_t>(t)});
    bool tables_mattered = false;  // some peers' blocks differ by table alone (not the test's blind spot)
    for (int64_t tokens : {1, 7, 33}) {
      SCOPED_TRACE("E=" + std::to_string(l.experts) + " tp=" + std::to_string(l.tp) + " T=" + std::to_string(tokens));
      Ids ids(static_cast<size_t>(tokens * l.k)), order(static_cast<size_t>(l.experts));
      for (int64_t t = 0; t < tokens; ++t) {  // distinct experts per token, as top-k gives
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        std::copy_n(order.begin(), l.k, ids.begin() + t * l.k);
      }
      const Tensor id = upload(ids, {tokens, l.k}), w = upload(normal(ids.size()), {tokens, l.k});
      const int64_t capacity = (tokens + l.tp - 1) / l.tp * std::min(l.k, width);
      for (int64_t dest = 0; dest < destinations; ++dest) {
        Tensor rows = upload(Ids(static_cast<size_t>(peers * capacity), 7777), {peers * capacity});
        Tensor experts = upload(Ids(static_cast<size_t>(peers * capacity), 7777), {peers * capacity, 1});
        ops->pack_from_peers(id, upload(stacked, {distinct, l.experts, cols}), upload(senders, {peers, 2}), l.tp, width,
                             l.shards, dest, capacity, rows, experts);
        const Ids got_rows = download_ids(rows), got_experts = download_ids(experts);
        // Peers 0 and tp: tp rank 0 both, tables 0 and 1.
        tables_mattered |= !std::equal(got_experts.begin(), got_experts.begin() + capacity,
                                       got_experts.begin() + l.tp * capacity);
        for (int64_t p = 0; p < peers; ++p) {
          const int64_t tp_rank = senders[2 * p + 1];
          Tensor slots = zeros({tokens, l.k}, DType::I32);
          ops->route_to_replicas(id, upload(tables[senders[2 * p]], {l.experts, cols}), slots);
          const int64_t entries = destinations * capacity;
          Tensor all_rows = zeros({entries}, DType::I32), all_experts = zeros({entries, 1}, DType::I32);
          Tensor scales = zeros({entries});
          ops->pack_dispatch(slots, w, tokens * tp_rank / l.tp, tokens * (tp_rank + 1) / l.tp, width, l.shards,
                             capacity, all_rows, all_experts, scales);
          const Ids want_rows = download_ids(all_rows.slice_rows(dest * capacity, capacity));
          const Ids want_experts = download_ids(all_experts.slice_rows(dest * capacity, capacity));
          EXPECT_EQ(Ids(got_rows.begin() + p * capacity, got_rows.begin() + (p + 1) * capacity), want_rows)
              << "peer " << p << ", destination " << dest;
          EXPECT_EQ(Ids(got_experts.begin() + p * capacity, got_experts.begin() + (p + 1) * capacity), want_experts)
              << "peer " << p << ", destination " << dest;
        }
      }
    }
    EXPECT_TRUE(tables_mattered) << "E=" << l.experts << ": no peer's block depended on its table";
  }
}

TEST_F(CpuOpsTest, ToFloatCopiesActivations) {
  const Vec x = normal(21);
  Tensor out = zeros({3, 7});
  ops->to_float(upload(x, {3, 7}), out);
  EXPECT_EQ(download(out), x);
}

}  // namespace
}  // namespace moetron

namespace moetron {
namespace {

// Routing statistics by hand. Layer 0: token 0 chose {0, 3}, token 1 {3, 1}, token 2
// {2, -1 (padding)}; layer 1 has no experts (all -1); a fourth record row is never counted.
TEST_F(CpuOpsTest, RoutingStatisticsCountSlotsAndPairsOfEachLayer) {
  Tensor records = upload(Ids{0, 3, 3, 1, 2, -1, 1, 1,  //
                              -1, -1, -1, -1, -1, -1, -1, -1},
                          {2, 4, 2});
  Tensor counts = zeros({2, 4}, DType::I64);
  Tensor pairs = zeros({2, 4, 4}, DType::I64);
  ops->accumulate_routing(records, 3, counts, pairs);
  ops->accumulate_routing(records, 1, counts, pairs);  // token 0 again
  std::vector<int64_t> got_pairs(32), got_counts(8);
  ops->to_host(pairs, got_pairs.data());
  ops->to_host(counts, got_counts.data());
  EXPECT_EQ(got_counts, (std::vector<int64_t>{2, 1, 1, 3, 0, 0, 0, 0}));
  std::vector<int64_t> want(32, 0);
  const std::vector<int64_t> layer0 = {2, 0, 0, 2,  //
                                       0, 1, 0, 1,  //
                                       0, 0, 1, 0,  //
                                       2, 1, 0, 3};
  std::copy(layer0.begin(), layer0.end(), want.begin());
  EXPECT_EQ(got_pairs, want);
}

TEST_F(CpuOpsTest, AddRowBiasAddsToEveryRow) {
  Tensor x = upload(Vec{1, 2, 3, 4, 5, 6}, {2, 3});
  ops->add_row_bias(x, upload(Vec{0.5f, -1, 2}, {3}));
  Vec got(6);
  ops->to_host(x, got.data());
  EXPECT_EQ(got, (Vec{1.5f, 1, 5, 4.5f, 4, 8}));
}

// A CPU rank's threads: its share of the cores its node's ranks use together, never more than its
// own affinity allows, at least one; set process-wide, 0 going back to every usable core.
TEST(CpuThreads, EachRankTakesItsShareOfTheNodesCores) {
  EXPECT_EQ(cpu_threads_for_rank(16, 16, 4), 4);  // unbound, four ranks
  EXPECT_EQ(cpu_threads_for_rank(1, 2, 2), 1);    // mpirun bound each to one core
  EXPECT_EQ(cpu_threads_for_rank(8, 16, 8), 2);   // bound to a socket of 8 cores with 3 others
  EXPECT_EQ(cpu_threads_for_rank(4, 64, 4), 4);   // srun --cpus-per-task=4 on a 64-core node
  EXPECT_EQ(cpu_threads_for_rank(2, 2, 4), 1);    // more ranks than cores
  EXPECT_EQ(cpu_threads_for_rank(6, 6, 0), 6);    // no count: the rank alone
  const int usable = cpu_usable_cores();
  ASSERT_GE(usable, 1);
  EXPECT_LE(usable, cpu_node_cores());
  set_cpu_threads(1);
  EXPECT_EQ(cpu_threads(), 1);
  set_cpu_threads(0);
  EXPECT_EQ(cpu_threads(), usable);
}

// One thread or four: the same numbers (each output is one dot product, whatever the split).
TEST_F(CpuOpsTest, LinearGivesTheSameNumbersOnOneThreadAndOnMany) {
  const int64_t rows = 67, k = 129, n = 131;  // 1.1e6 multiply-adds: split over up to 4 threads
  const Vec x = normal(static_cast<size_t>(rows * k)), w = normal(static_cast<size_t>(n * k));
  const auto run = [&](int threads) {
    set_cpu_threads(threads);
    Tensor out = ops->alloc(DType::F32, {rows, n});
    ops->linear(upload(x, {rows, k}), upload(w, {n, k}), nullptr, out);
    return download(out);
  };
  const Vec one = run(1), many = run(4);
  set_cpu_threads(0);
  EXPECT_EQ(one, many);
}

}  // namespace
}  // namespace moetron
