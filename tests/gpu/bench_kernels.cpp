// Timings of the CUDA operators at model-sized shapes (run with MOETRON_GPU_BENCH=1; skipped
// otherwise). Each line: operator, shape, median time over 20 runs after 3 warm-ups (CUDA
// events on the backend's stream), and the achieved rate: GB/s for memory-bound operators
// (bytes each input read once plus each output written once), TFLOP/s for matrix work.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>

#include "gpu_test_util.hpp"
#include "moetron/kernels.hpp"

namespace moetron {
namespace gputest {
namespace {

class CudaBench : public GpuVsCpu {
 protected:
  void SetUp() override {
    if (!std::getenv("MOETRON_GPU_BENCH")) GTEST_SKIP() << "set MOETRON_GPU_BENCH=1 to time";
    GpuVsCpu::SetUp();
  }

  // Median milliseconds of fn over the backend's stream.
  static double time_ms(const std::function<void()>& fn) {
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    for (int i = 0; i < 3; ++i) fn();
    std::vector<float> ms(20);
    for (float& m : ms) {
      CUDA_CHECK(cudaEventRecord(start, gpu().stream()));
      fn();
      CUDA_CHECK(cudaEventRecord(stop, gpu().stream()));
      CUDA_CHECK(cudaEventSynchronize(stop));
      CUDA_CHECK(cudaEventElapsedTime(&m, start, stop));
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }

  static void report(const char* op, const std::string& shape, double ms, double bytes,
                     double flops) {
    std::printf("BENCH | %-22s | %-40s | %9.1f us | %8.1f GB/s | %7.1f TFLOP/s |\n", op,
                shape.c_str(), ms * 1e3, bytes / (ms * 1e-3) / 1e9, flops / (ms * 1e-3) / 1e12);
  }

  // Device tensors of random bf16 values (the GPU side only; no CPU reference needed here).
  Tensor random_gpu(std::vector<int64_t> shape, float scale = 1.0f) {
    return random_activation(std::move(shape), scale).gpu;
  }
};

TEST_F(CudaBench, Dense) {
  const int64_t T = 4096, H = 4096;
  Tensor residual = random_gpu({T, H}), delta = random_gpu({T, H}), w = random_gpu({H});
  Tensor out = gpu().alloc(DType::BF16, {T, H});
  double ms = time_ms([&] { gpu().add_rmsnorm(residual, delta, w, 1e-6f, out); });
  report("add_rmsnorm", "[4096, 4096]", ms, 4.0 * T * H * 2, 0);
  ms = time_ms([&] { gpu().rmsnorm(residual, w, 1e-6f, out); });
  report("rmsnorm", "[4096, 4096]", ms, 2.0 * T * H * 2, 0);
  ms = time_ms([&] { gpu().add_inplace(residual, delta); });
  report("add_inplace", "[4096, 4096]", ms, 3.0 * T * H * 2, 0);

  Tensor q = random_gpu({T, 32 * 128}), k = random_gpu({T, 8 * 128});
  Tensor pos = ints(random_ints(T, 0, 32767), {T}).gpu;
  ms = time_ms([&] { gpu().rope(q, k, pos, 128, 1e6); });
  report("rope", "T=4096 nq=32 nk=8 hd=128", ms, 2.0 * T * 40 * 128 * 2, 0);

  Tensor table = gpu().upload_weight(host_tensor(DType::BF16, {152064, 2048}));
  Tensor ids = ints(random_ints(T, 0, 152063), {T}).gpu;
  Tensor emb = gpu().alloc(DType::BF16, {T, 2048});
  ms = time_ms([&] { gpu().embed(ids, table, emb); });
  report("embed", "T=4096 H=2048", ms, 2.0 * T * 2048 * 2, 0);

  Tensor logits = gpu().alloc(DType::F32, {64, 151936});
  gpu().fill_zero(logits);
  Tensor next = gpu().alloc(DType::I32, {64});
  ms = time_ms([&] { gpu().argmax(logits, next); });
  report("argmax", "[64, 151936] f32", ms, 64.0 * 151936 * 4, 0);
  Tensor one_row = gpu().alloc(DType::F32, {1, 50304});
  gpu().fill_zero(one_row);
  Tensor first = next.slice_rows(0, 1);
  ms = time_ms([&] { gpu().argmax(one_row, first); });
  report("argmax", "[1, 50304] f32 (OLMoE decode)", ms, 50304.0 * 4, 0);

  for (int64_t rows : {int64_t{64}, int64_t{4096}}) {
    Tensor x = random_gpu({rows, 2048}), wq = random_gpu({6144, 2048}, 0.02f);
    Tensor y = gpu().alloc(DType::BF16, {rows, 6144});
    ms = time_ms([&] { gpu().linear(x, wq, nullptr, y); });
    report("linear (cuBLAS)", std::to_string(rows) + " x 2048 x 6144", ms,
           2.0 * (rows * 2048 + 6144 * 2048 + rows * 6144), 2.0 * rows * 2048 * 6144);
  }
}

TEST_F(CudaBench, MoeAndRouter) {
  struct Case { const char* name; int64_t tokens, experts, k, hidden, inter; };
  // Decode first: the prefill cases' weights take long to draw on the host.
  for (Case c : {Case{"olmoe decode T=1", 1, 64, 8, 2048, 1024},
                 Case{"olmoe decode T=8", 8, 64, 8, 2048, 1024},
                 Case{"olmoe decode T=64", 64, 64, 8, 2048, 1024},
                 Case{"qwen3-30b-a3b decode", 64, 128, 8, 2048, 768},
                 Case{"olmoe prefill", 4096, 64, 8, 2048, 1024},
                 Case{"qwen3-30b-a3b prefill", 4096, 128, 8, 2048, 768},
                 Case{"mixtral prefill", 4096, 8, 2, 4096, 14336}}) {
    gpu().reset_temps();
    Tensor logits = random_gpu({c.tokens, c.experts}, 3.0f);
    Tensor ids = gpu().alloc(DType::I32, {c.tokens, c.k});
    Tensor weights = gpu().alloc(DType::F32, {c.tokens, c.k});
    double ms = time_ms([&] { gpu().router_topk(logits, c.k, true, ids, weights); });
    report("router_topk", std::string(c.name) + " E=" + std::to_string(c.experts), ms,
           c.tokens * (c.experts * 2.0 + c.k * 8.0), 0);

    ExpertWeights ew;
    ew.num_local = c.experts;
    ew.gate_up = random_gpu({c.experts, 2 * c.inter, c.hidden}, 0.02f);
    ew.down = random_gpu({c.experts, c.hidden, c.inter}, 0.02f);
    Tensor x = random_gpu({c.tokens, c.hidden});
    Tensor out = gpu().alloc(DType::BF16, {c.tokens, c.hidden});
    const size_t mark = gpu().temp_mark();
    ms = time_ms([&] {
      gpu().temp_release(mark);
      gpu().moe_experts(x, ids, weights, ew, out);
    });
    const double flops = 2.0 * c.tokens * c.k * 3.0 * c.hidden * c.inter;
    // Only the experts some token chose are read.
    std::vector<int32_t> chosen = read_ints(gpu(), ids);
    std::sort(chosen.begin(), chosen.end());
    const auto active = std::unique(chosen.begin(), chosen.end()) - chosen.begin();
    const double weight_bytes = 3.0 * active * c.hidden * c.inter * 2;
    report("moe_experts", c.name, ms, weight_bytes + 2.0 * c.tokens * c.hidden * 2, flops);
  }
}

TEST_F(CudaBench, Attention) {
  struct Case { const char* name; int seqs, q_len, kv_len, nq, nk, hd; };
  for (Case c : {Case{"prefill 1x4096", 1, 4096, 4096, 32, 4, 128},
                 Case{"prefill 8x512", 8, 512, 512, 32, 8, 128},
                 Case{"decode 64 x kv 2048", 64, 1, 2048, 32, 4, 128},
                 Case{"decode 8 x kv 8192", 8, 1, 8192, 32, 8, 128},
                 Case{"decode 1 x kv 32768", 1, 1, 32768, 16, 16, 128}}) {
    gpu().reset_temps();
    const int bs = 16, blocks_per_seq = (c.kv_len + bs - 1) / bs;
    const int T = c.seqs * c.q_len;
    KvCache cache{random_gpu({int64_t(c.seqs) * blocks_per_seq, bs, c.nk, c.hd}),
                  random_gpu({int64_t(c.seqs) * blocks_per_seq, bs, c.nk, c.hd})};
    std::vector<int32_t> tables(size_t(c.seqs) * blocks_per_seq), qs(c.seqs + 1), lens(c.seqs),
        positions;
    std::iota(tables.begin(), tables.end(), 0);
    std::shuffle(tables.begin(), tables.end(), rng_);
    for (int s = 0; s <= c.seqs; ++s) qs[s] = s * c.q_len;
    for (int s = 0; s < c.seqs; ++s)
      for (int j = 0; j < c.q_len; ++j) positions.push_back(c.kv_len - c.q_len + j);
    std::fill(lens.begin(), lens.end(), c.kv_len);
    BatchTensors b;
    b.num_tokens = T;
    b.num_seqs = c.seqs;
    b.max_blocks_per_seq = blocks_per_seq;
    b.block_size = bs;
    b.max_kv_len = c.kv_len;
    b.positions = ints(positions, {T}).gpu;
    b.query_start = ints(qs, {c.seqs + 1}).gpu;
    b.kv_lens = ints(lens, {c.seqs}).gpu;
    b.block_tables = ints(tables, {c.seqs, blocks_per_seq}).gpu;
    Tensor q = random_gpu({T, c.nq * c.hd});
    Tensor out = gpu().alloc(DType::BF16, {T, c.nq * c.hd});
    const size_t mark = gpu().temp_mark();
    const double ms = time_ms([&] {
      gpu().temp_release(mark);
      gpu().attention(q, cache, b, c.nq, c.nk, c.hd, 0.088f, out);
    });
    // Causal: query j of a sequence sees kv_len - q_len + j + 1 keys.
    double pairs = 0;
    for (int j = 0; j < c.q_len; ++j) pairs += c.kv_len - c.q_len + j + 1;
    const double flops = 4.0 * c.seqs * pairs * c.nq * c.hd;
    const double bytes = 2.0 * c.seqs * c.kv_len * c.nk * c.hd * 2 + 2.0 * T * c.nq * c.hd * 2;
    report("attention", c.name, ms, bytes, flops);
  }
}

}  // namespace
}  // namespace gputest
}  // namespace moetron
