// Dense operators of CudaOps against the CPU reference: gathers, norms, GEMMs, elementwise ops,
// RoPE, sampling. Odd and small shapes on purpose (vector and scalar kernel paths).
#include <cmath>

#include "gpu_test_util.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaDense = GpuVsCpu;

const int64_t kRows[] = {1, 3, 17, 129};
const int64_t kCols[] = {64, 96, 2048, 50};  // 50: not a multiple of 8, the scalar paths

std::string shape_name(int64_t rows, int64_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

TEST_F(CudaDense, EmbedAndGatherRowsCopyExactly) {
  for (int64_t cols : kCols) {
    Pair table = random_weight({300, cols});
    for (int64_t n : kRows) {
      Pair ids = ints(random_ints(n, 0, 299), {n});
      Pair out = output(DType::BF16, {n, cols});
      cpu().embed(ids.cpu, table.cpu, out.cpu);
      gpu().embed(ids.gpu, table.gpu, out.gpu);
      EXPECT_EQ(read(gpu(), out.gpu), read(cpu(), out.cpu)) << "embed " << shape_name(n, cols);

      Pair x = random_activation({40, cols});
      Pair rows = ints(random_ints(n, 0, 39), {n});
      Pair g = output(DType::BF16, {n, cols});
      cpu().gather_rows(x.cpu, rows.cpu, g.cpu);
      gpu().gather_rows(x.gpu, rows.gpu, g.gpu);
      EXPECT_EQ(read(gpu(), g.gpu), read(cpu(), g.cpu)) << "gather " << shape_name(n, cols);
    }
  }
}

TEST_F(CudaDense, RmsnormFamilyMatchesReference) {
  const float eps = 1e-6f;
  for (int64_t cols : kCols) {
    Pair w = random_weight({cols}, 2.0f);
    for (int64_t rows : kRows) {
      const std::string name = shape_name(rows, cols);
      Pair x = random_activation({rows, cols}, 3.0f);
      Pair out = output(DType::BF16, {rows, cols});
      cpu().rmsnorm(x.cpu, w.cpu, eps, out.cpu);
      gpu().rmsnorm(x.gpu, w.gpu, eps, out.gpu);
      expect_close(read(gpu(), out.gpu), read(cpu(), out.cpu), kBf16Tolerance, "rmsnorm " + name);

      Pair residual = random_activation({rows, cols}, 3.0f);
      Pair delta = random_activation({rows, cols});
      Pair out2 = output(DType::BF16, {rows, cols});
      cpu().add_rmsnorm(residual.cpu, delta.cpu, w.cpu, eps, out2.cpu);
      gpu().add_rmsnorm(residual.gpu, delta.gpu, w.gpu, eps, out2.gpu);
      expect_close(read(gpu(), out2.gpu), read(cpu(), out2.cpu), kBf16Tolerance,
                   "add_rmsnorm out " + name);
      expect_close(read(gpu(), residual.gpu), read(cpu(), residual.cpu), kBf16Tolerance,
                   "add_rmsnorm residual " + name);

      Pair sumsq = output(DType::F32, {rows});
      cpu().row_sumsq(x.cpu, sumsq.cpu);
      gpu().row_sumsq(x.gpu, sumsq.gpu);
      expect_close(read(gpu(), sumsq.gpu), read(cpu(), sumsq.cpu), 1e-5, "row_sumsq " + name);

      // A shard of a row twice as wide: the sum of squares comes from outside.
      std::vector<float> sums = read(cpu(), sumsq.cpu);
      for (float& s : sums) s = 2.0f * s + 1.0f;
      Pair sums_pair = floats(sums, {rows});
      Pair out3 = output(DType::BF16, {rows, cols});
      cpu().rmsnorm_with_sumsq(x.cpu, sums_pair.cpu, 2 * cols, w.cpu, eps, out3.cpu);
      gpu().rmsnorm_with_sumsq(x.gpu, sums_pair.gpu, 2 * cols, w.gpu, eps, out3.gpu);
      expect_close(read(gpu(), out3.gpu), read(cpu(), out3.cpu), kBf16Tolerance,
                   "rmsnorm_with_sumsq " + name);
    }
  }
}

TEST_F(CudaDense, LinearMatchesReference) {
  struct Case { int64_t rows, k, n; };
  for (Case c : {Case{1, 64, 96}, Case{3, 96, 64}, Case{17, 2048, 256}, Case{129, 64, 2048},
                 Case{129, 2048, 1000}}) {
    const std::string name = std::to_string(c.rows) + "x" + std::to_string(c.k) + "x" +
                             std::to_string(c.n);
    Pair x = random_activation({c.rows, c.k});
    Pair w = random_weight({c.n, c.k}, 0.1f);
    Pair bias = random_weight({c.n});
    Pair out = output(DType::BF16, {c.rows, c.n});
    cpu().linear(x.cpu, w.cpu, &bias.cpu, out.cpu);
    gpu().linear(x.gpu, w.gpu, &bias.gpu, out.gpu);
    expect_close(read(gpu(), out.gpu), read(cpu(), out.cpu), kBf16Tolerance, "linear+bias " + name);

    Pair out32 = output(DType::F32, {c.rows, c.n});
    cpu().linear(x.cpu, w.cpu, nullptr, out32.cpu);
    gpu().linear(x.gpu, w.gpu, nullptr, out32.gpu);
    expect_close(read(gpu(), out32.gpu), read(cpu(), out32.cpu), 1e-3, "linear f32 " + name);
  }
}

TEST_F(CudaDense, ElementwiseOpsMatchReference) {
  for (int64_t cols : kCols) {
    for (int64_t rows : kRows) {
      const std::string name = shape_name(rows, cols);
      Pair acc = random_activation({rows, cols}, 4.0f);
      Pair x = random_activation({rows, cols});
      cpu().add_inplace(acc.cpu, x.cpu);
      gpu().add_inplace(acc.gpu, x.gpu);
      expect_close(read(gpu(), acc.gpu), read(cpu(), acc.cpu), kBf16Tolerance, "add " + name);

      cpu().clamp_inplace(acc.cpu, 1.5f);
      gpu().clamp_inplace(acc.gpu, 1.5f);
      expect_close(read(gpu(), acc.gpu), read(cpu(), acc.cpu), kBf16Tolerance, "clamp " + name);

      Pair gate_w = random_weight({1, cols}, 0.2f);
      Pair y = random_activation({rows, cols});
      cpu().add_sigmoid_gated(acc.cpu, x.cpu, gate_w.cpu, y.cpu);
      gpu().add_sigmoid_gated(acc.gpu, x.gpu, gate_w.gpu, y.gpu);
      expect_close(read(gpu(), acc.gpu), read(cpu(), acc.cpu), kBf16Tolerance,
                   "add_sigmoid_gated " + name);

      Pair f = output(DType::F32, {rows, cols});
      cpu().to_float(acc.cpu, f.cpu);
      gpu().to_float(acc.gpu, f.gpu);
      expect_close(read(gpu(), f.gpu), read(cpu(), f.cpu), kBf16Tolerance, "to_float " + name);
    }
  }
}

TEST_F(CudaDense, ScatterAddRowsWithRepeatedRows) {
  for (int64_t cols : kCols) {
    for (int64_t n : kRows) {
      Pair acc = random_activation({20, cols});
      Pair x = random_activation({n, cols});
      Pair rows = ints(random_ints(n, 0, 4), {n});  // few targets: many repeats
      Pair scale = floats(random_values(n, 1.0f), {n});
      cpu().scatter_add_rows(acc.cpu, x.cpu, rows.cpu, scale.cpu);
      gpu().scatter_add_rows(acc.gpu, x.gpu, rows.gpu, scale.gpu);
      // Repeated rows accumulate in bf16 on the GPU, one rounding per add.
      expect_close(read(gpu(), acc.gpu), read(cpu(), acc.cpu), 2 * kBf16Tolerance,
                   "scatter_add_rows " + shape_name(n, cols));
    }
  }
}

TEST_F(CudaDense, SwigluMlpMatchesReference) {
  struct Case { int64_t rows, hidden, inter; };
  for (Case c : {Case{1, 64, 32}, Case{3, 96, 40}, Case{17, 2048, 256}, Case{129, 256, 1024}}) {
    Pair x = random_activation({c.rows, c.hidden});
    Pair gate_up = random_weight({2 * c.inter, c.hidden}, 1.0f / std::sqrt(float(c.hidden)));
    Pair down = random_weight({c.hidden, c.inter}, 1.0f / std::sqrt(float(c.inter)));
    Pair out = output(DType::BF16, {c.rows, c.hidden});
    cpu().swiglu_mlp(x.cpu, gate_up.cpu, down.cpu, out.cpu);
    gpu().swiglu_mlp(x.gpu, gate_up.gpu, down.gpu, out.gpu);
    expect_close(read(gpu(), out.gpu), read(cpu(), out.cpu), kBf16Tolerance,
                 "swiglu_mlp " + std::to_string(c.rows) + "x" + std::to_string(c.hidden));
  }
}

TEST_F(CudaDense, RopeMatchesReference) {
  struct Case { int64_t nq, nk, hd; double theta; };
  for (Case c : {Case{4, 4, 64, 10000.0}, Case{8, 2, 128, 1e6}, Case{32, 4, 128, 10000.0}}) {
    for (int64_t tokens : kRows) {
      Pair q = random_activation({tokens, c.nq * c.hd});
      Pair k = random_activation({tokens, c.nk * c.hd});
      Pair pos = ints(random_ints(tokens, 0, 8191), {tokens});
      cpu().rope(q.cpu, k.cpu, pos.cpu, c.hd, c.theta);
      gpu().rope(q.gpu, k.gpu, pos.gpu, c.hd, c.theta);
      const std::string name = "T=" + std::to_string(tokens) + " hd=" + std::to_string(c.hd);
      expect_close(read(gpu(), q.gpu), read(cpu(), q.cpu), kBf16Tolerance, "rope q " + name);
      expect_close(read(gpu(), k.gpu), read(cpu(), k.cpu), kBf16Tolerance, "rope k " + name);
    }
  }
}

TEST_F(CudaDense, ArgmaxPicksTheLargestLogit) {
  for (int64_t rows : kRows) {
    // Odd widths: rows that start off a 16-byte boundary (scalar head and tail of the row).
    for (int64_t vocab : {int64_t{50}, int64_t{1000}, int64_t{32000}, int64_t{50257}}) {
      std::vector<float> logits = random_values(rows * vocab, 10.0f);
      std::vector<int32_t> expect(rows);
      for (int64_t r = 0; r < rows; ++r) {
        // A clear winner in each row, at a random place, tied by a later copy: the lower wins.
        const int64_t winner = random_ints(1, 0, static_cast<int32_t>(vocab - 1))[0];
        logits[r * vocab + winner] = 20.0f;
        const int64_t later = random_ints(1, static_cast<int32_t>(winner),
                                          static_cast<int32_t>(vocab - 1))[0];
        logits[r * vocab + later] = 20.0f;
        expect[r] = static_cast<int32_t>(winner);
      }
      for (DType dt : {DType::F32, DType::BF16}) {
        Tensor l = gpu().alloc(dt, {rows, vocab});
        if (dt == DType::F32) {
          gpu().copy_from_host(l, logits.data());
        } else {
          std::vector<uint16_t> bits(logits.size());
          for (size_t i = 0; i < bits.size(); ++i) bits[i] = float_to_bf16(logits[i]);
          gpu().copy_from_host(l, bits.data());
        }
        Tensor ids = gpu().alloc(DType::I32, {rows});
        poison(gpu(), ids);
        gpu().argmax(l, ids);
        EXPECT_EQ(read_ints(gpu(), ids), expect) << rows << "x" << vocab << " " << dtype_name(dt);
      }
    }
  }
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
