// Dense operators of CudaOps against the CPU reference, as a table (op_table.hpp): gathers,
// norms, GEMMs, elementwise ops, RoPE, argmax. Odd and small shapes on purpose (vector and
// scalar kernel paths).
#include <cmath>

#include "gpu_test_util.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace gputest {
namespace {

using CudaDense = GpuVsCpu;

const int64_t kRows[] = {1, 3, 17, 129};
const int64_t kCols[] = {64, 96, 2048, 50};  // 50: not a multiple of 8, the scalar paths

std::string shape_name(int64_t rows, int64_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

// Every (rows, cols) of the grids above, one case each.
template <class MakeCase>
std::vector<OpCase> over_grid(const MakeCase& make) {
  std::vector<OpCase> cases;
  for (int64_t cols : kCols)
    for (int64_t rows : kRows) cases.push_back(make(rows, cols));
  return cases;
}

std::vector<float> host_of(CaseInputs& in, const Tensor& t) { return read_as_float(in.ops, t); }

TEST_F(CudaDense, EmbedAndGatherRowsCopyExactly) {
  // Gathers copy values: exact.
  run_cases(over_grid([](int64_t n, int64_t cols) {
    return OpCase{"embed " + shape_name(n, cols), [n, cols](CaseInputs& in) {
      Tensor table = in.weight({300, cols});
      Tensor ids = in.i32(in.ints(n, 0, 299), {n});
      Tensor out = in.output_activation({n, cols});
      in.ops.embed(ids, table, out);
      return CaseOutputs{{"out", host_of(in, out), 0.0}};
    }};
  }));
  run_cases(over_grid([](int64_t n, int64_t cols) {
    return OpCase{"gather_rows " + shape_name(n, cols), [n, cols](CaseInputs& in) {
      Tensor x = in.activation({40, cols});
      Tensor rows = in.i32(in.ints(n, 0, 39), {n});
      Tensor out = in.output_activation({n, cols});
      in.ops.gather_rows(x, rows, out);
      return CaseOutputs{{"out", host_of(in, out), 0.0}};
    }};
  }));
}

constexpr float kEps = 1e-6f;

TEST_F(CudaDense, RmsnormFamilyMatchesReference) {
  // Norms: fp32 math, one bf16 rounding of the output: kBf16Tolerance.
  run_cases(over_grid([](int64_t rows, int64_t cols) {
    return OpCase{"rmsnorm " + shape_name(rows, cols), [rows, cols](CaseInputs& in) {
      Tensor w = in.weight({cols}, 2.0f);
      Tensor x = in.activation({rows, cols}, 3.0f);
      Tensor out = in.output_activation({rows, cols});
      in.ops.rmsnorm(x, w, kEps, out);
      return CaseOutputs{{"out", host_of(in, out), kBf16Tolerance}};
    }};
  }));
  run_cases(over_grid([](int64_t rows, int64_t cols) {
    return OpCase{"add_rmsnorm " + shape_name(rows, cols), [rows, cols](CaseInputs& in) {
      Tensor w = in.weight({cols}, 2.0f);
      Tensor residual = in.activation({rows, cols}, 3.0f);
      Tensor delta = in.activation({rows, cols});
      Tensor out = in.output_activation({rows, cols});
      in.ops.add_rmsnorm(residual, delta, w, kEps, out);
      // The residual sum is rounded to bf16 once, as the output is.
      return CaseOutputs{{"out", host_of(in, out), kBf16Tolerance},
                         {"residual", host_of(in, residual), kBf16Tolerance}};
    }};
  }));
  run_cases(over_grid([](int64_t rows, int64_t cols) {
    return OpCase{"row_sumsq " + shape_name(rows, cols), [rows, cols](CaseInputs& in) {
      Tensor x = in.activation({rows, cols}, 3.0f);
      Tensor sumsq = in.output(DType::F32, {rows});
      in.ops.row_sumsq(x, sumsq);
      // Same bf16-exact inputs, fp32 sums in a different order: only summation rounding.
      return CaseOutputs{{"sumsq", host_of(in, sumsq), 1e-5}};
    }};
  }));
  run_cases(over_grid([](int64_t rows, int64_t cols) {
    return OpCase{"rmsnorm_with_sumsq " + shape_name(rows, cols), [rows, cols](CaseInputs& in) {
      // A shard of a row twice as wide: the sum of squares comes from outside (this shard's
      // twice, plus one).
      Tensor w = in.weight({cols}, 2.0f);
      const std::vector<float> xv = in.values(rows * cols, 3.0f);
      Tensor x = in.activation(xv, {rows, cols});
      std::vector<float> sums(static_cast<size_t>(rows), 1.0f);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) sums[r] += 2.0f * xv[r * cols + c] * xv[r * cols + c];
      Tensor sumsq = in.f32(sums, {rows});
      Tensor out = in.output_activation({rows, cols});
      in.ops.rmsnorm_with_sumsq(x, sumsq, 2 * cols, w, kEps, out);
      return CaseOutputs{{"out", host_of(in, out), kBf16Tolerance}};
    }};
  }));
}

TEST_F(CudaDense, LinearMatchesReference) {
  struct Shape { int64_t rows, k, n; };
  std::vector<OpCase> cases;
  // Decode-sized and awkward shapes too: a 2048 x 6144 QKV at one row, odd n, k not a multiple
  // of 8 (cuBLAS then), k not a multiple of a warp's 32-wide chunk or of the dense GEMV's
  // 1,024-wide turn (4104, 5640), n under one 16-row block (1, 17), 9-16 rows (two token blocks).
  for (Shape s : {Shape{1, 64, 96}, Shape{3, 96, 64}, Shape{1, 2048, 6144}, Shape{2, 72, 51},
                  Shape{5, 2048, 64}, Shape{8, 136, 1001}, Shape{4, 52, 40}, Shape{17, 2048, 256},
                  Shape{129, 64, 2048}, Shape{129, 2048, 1000}, Shape{1, 8, 1}, Shape{9, 4104, 33},
                  Shape{16, 1000, 130}, Shape{12, 40, 17}, Shape{1, 5640, 48}}) {
    const std::string name = std::to_string(s.rows) + "x" + std::to_string(s.k) + "x" +
                             std::to_string(s.n);
    cases.push_back({"linear+bias " + name, [s](CaseInputs& in) {
      Tensor x = in.activation({s.rows, s.k});
      Tensor w = in.weight({s.n, s.k}, 0.1f);
      Tensor bias = in.weight({s.n});
      Tensor out = in.output_activation({s.rows, s.n});
      in.ops.linear(x, w, &bias, out);
      // fp32 accumulation, bf16 output (and bias add): one or two bf16 roundings.
      return CaseOutputs{{"out", host_of(in, out), kBf16Tolerance}};
    }});
    cases.push_back({"linear f32 " + name, [s](CaseInputs& in) {
      Tensor x = in.activation({s.rows, s.k});
      Tensor w = in.weight({s.n, s.k}, 0.1f);
      Tensor out = in.output(DType::F32, {s.rows, s.n});
      in.ops.linear(x, w, nullptr, out);
      // F32 output of exact bf16 inputs: only the accumulation order differs.
      return CaseOutputs{{"out", host_of(in, out), 1e-3}};
    }});
  }
  // Both GPU paths of a few-row linear: the dense GEMV kernel and cuBLAS.
  const int64_t default_rows = gpu().dense_gemv_max_rows();
  run_cases(cases, {{"dense GEMV", [](CudaOps& g) { g.set_dense_gemv_max_rows(kernels::kDenseGemvMaxRows); }},
                    {"cuBLAS", [](CudaOps& g) { g.set_dense_gemv_max_rows(0); }}});
  gpu().set_dense_gemv_max_rows(default_rows);
}

TEST_F(CudaDense, ElementwiseOpsMatchReference) {
  // One bf16 rounding of each result: kBf16Tolerance.
  run_cases(over_grid([](int64_t rows, int64_t cols) {
    return OpCase{"add_inplace " + shape_name(rows, cols), [rows, cols](CaseInputs& in) {
      Tensor acc = in.activation({rows, cols}, 4.0f);
      Tensor x = in.activation({rows, cols});
      in.ops.add_inplace(acc, x);
      return CaseOutputs{{"acc", host_of(in, acc), kBf16Tolerance}};
    }};
  }));
  run_cases(over_grid([](int64_t rows, int64_t cols) {
    return OpCase{"clamp_inplace " + shape_name(rows, cols), [rows, cols](CaseInputs& in) {
      Tensor x = in.activation({rows, cols}, 4.0f);  // many values beyond the limit
      in.ops.clamp_inplace(x, 1.5f);
      return CaseOutputs{{"x", host_of(in, x), kBf16Tolerance}};
    }};
  }));
  run_cases(over_grid([](int64_t rows, int64_t cols) {
    return OpCase{"add_sigmoid_gated " + shape_name(rows, cols), [rows, cols](CaseInputs& in) {
      Tensor acc = in.activation({rows, cols}, 4.0f);
      Tensor x = in.activation({rows, cols});
      Tensor gate_w = in.weight({1, cols}, 0.2f);
      Tensor y = in.activation({rows, cols});
      in.ops.add_sigmoid_gated(acc, x, gate_w, y);
      return CaseOutputs{{"acc", host_of(in, acc), kBf16Tolerance}};
    }};
  }));
  run_cases(over_grid([](int64_t rows, int64_t cols) {
    return OpCase{"to_float " + shape_name(rows, cols), [rows, cols](CaseInputs& in) {
      Tensor x = in.activation({rows, cols}, 4.0f);
      Tensor out = in.output(DType::F32, {rows, cols});
      in.ops.to_float(x, out);
      return CaseOutputs{{"out", host_of(in, out), 0.0}};  // bf16 -> f32 is exact
    }};
  }));
  // An output 4 bytes past a 16-byte boundary: the kernel's scalar stores, not its float4 ones.
  run_cases({OpCase{"to_float [3, 64] into an unaligned output", [](CaseInputs& in) {
    Tensor x = in.activation({3, 64}, 4.0f);
    Tensor all = in.output(DType::F32, {1 + 3 * 64, 1});
    Tensor out = all.slice_rows(1, 3 * 64);
    in.ops.to_float(x, out);
    return CaseOutputs{{"out", host_of(in, out), 0.0}};
  }}});
}

TEST_F(CudaDense, ScatterAddRowsWithRepeatedRows) {
  run_cases(over_grid([](int64_t n, int64_t cols) {
    return OpCase{"scatter_add_rows " + shape_name(n, cols), [n, cols](CaseInputs& in) {
      Tensor acc = in.activation({20, cols});
      Tensor x = in.activation({n, cols});
      Tensor rows = in.i32(in.ints(n, 0, 4), {n});  // few targets: many repeats
      Tensor scale = in.f32(in.values(n), {n});
      in.ops.scatter_add_rows(acc, x, rows, scale);
      // Repeated rows accumulate in bf16 on the GPU, one rounding per add.
      return CaseOutputs{{"acc", host_of(in, acc), 2 * kBf16Tolerance}};
    }};
  }));
}

TEST_F(CudaDense, SwigluMlpMatchesReference) {
  struct Shape { int64_t rows, hidden, inter; };
  std::vector<OpCase> cases;
  for (Shape s : {Shape{1, 64, 32}, Shape{3, 96, 40}, Shape{17, 2048, 256}, Shape{129, 256, 1024}}) {
    cases.push_back({"swiglu_mlp " + std::to_string(s.rows) + "x" + std::to_string(s.hidden) +
                         " I=" + std::to_string(s.inter),
                     [s](CaseInputs& in) {
      Tensor x = in.activation({s.rows, s.hidden});
      Tensor gate_up = in.weight({2 * s.inter, s.hidden}, 1.0f / std::sqrt(float(s.hidden)));
      Tensor down = in.weight({s.hidden, s.inter}, 1.0f / std::sqrt(float(s.inter)));
      Tensor out = in.output_activation({s.rows, s.hidden});
      in.ops.swiglu_mlp(x, gate_up, down, out);
      // Two GEMMs with a bf16 intermediate: a few bf16 roundings, within kBf16Tolerance.
      return CaseOutputs{{"out", host_of(in, out), kBf16Tolerance}};
    }});
  }
  run_cases(cases);
}

TEST_F(CudaDense, RopeMatchesReference) {
  struct Heads { int64_t nq, nk, hd; double theta; };
  std::vector<OpCase> cases;
  for (Heads h : {Heads{4, 4, 64, 10000.0}, Heads{8, 2, 128, 1e6}, Heads{32, 4, 128, 10000.0}}) {
    for (int64_t tokens : kRows) {
      cases.push_back({"rope T=" + std::to_string(tokens) + " nq=" + std::to_string(h.nq) +
                           " nk=" + std::to_string(h.nk) + " hd=" + std::to_string(h.hd),
                       [h, tokens](CaseInputs& in) {
        Tensor q = in.activation({tokens, h.nq * h.hd});
        Tensor k = in.activation({tokens, h.nk * h.hd});
        Tensor pos = in.i32(in.ints(tokens, 0, 8191), {tokens});
        in.ops.rope(q, k, pos, h.hd, h.theta);
        // fp32 angles and rotation, one bf16 rounding of each result.
        return CaseOutputs{{"q", host_of(in, q), kBf16Tolerance},
                           {"k", host_of(in, k), kBf16Tolerance}};
      }});
    }
  }
  run_cases(cases);
}

// Logits with a clear winner in each row at a random place, tied by a later copy: the lower
// index must win. Odd widths: rows that start off a 16-byte boundary.
std::vector<float> tied_logits(CaseInputs& in, int64_t rows, int64_t vocab,
                               std::vector<int32_t>* winners) {
  std::vector<float> logits = in.values(rows * vocab, 10.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t winner = in.ints(1, 0, static_cast<int32_t>(vocab - 1))[0];
    const int32_t later = in.ints(1, winner, static_cast<int32_t>(vocab - 1))[0];
    logits[r * vocab + winner] = logits[r * vocab + later] = 20.0f;
    if (winners) winners->push_back(winner);
  }
  return logits;
}

const int64_t kVocabs[] = {50, 1000, 32000, 50257};

TEST_F(CudaDense, ArgmaxRowsMatchesReference) {
  std::vector<OpCase> cases;
  for (int64_t rows : kRows) {
    for (int64_t vocab : kVocabs) {
      cases.push_back({"argmax_rows " + shape_name(rows, vocab), [rows, vocab](CaseInputs& in) {
        Tensor logits = in.f32(tied_logits(in, rows, vocab, nullptr), {rows, vocab});
        Tensor ids = in.output(DType::I32, {rows});
        in.ops.argmax_rows(logits, ids);
        return CaseOutputs{{"ids", host_of(in, ids), 0.0}};  // an index: exact
      }});
    }
  }
  run_cases(cases);
}

// CudaOps::argmax (beyond Ops) also takes bf16 logits; checked against the known winners.
TEST_F(CudaDense, ArgmaxPicksTheLargestLogit) {
  for (int64_t rows : kRows) {
    for (int64_t vocab : kVocabs) {
      for (DType dt : {DType::F32, DType::BF16}) {
        CaseInputs in(gpu(), 7 + rows * vocab);
        std::vector<int32_t> expect;
        const std::vector<float> logits = tied_logits(in, rows, vocab, &expect);
        Tensor l = dt == DType::F32 ? in.f32(logits, {rows, vocab})
                                    : in.activation(logits, {rows, vocab});
        Tensor ids = in.output(DType::I32, {rows});
        gpu().argmax(l, ids);
        EXPECT_EQ(read_ints(gpu(), ids), expect) << rows << "x" << vocab << " " << dtype_name(dt);
      }
    }
  }
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
