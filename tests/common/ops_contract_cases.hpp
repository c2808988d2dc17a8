// The Ops contract's checks as a table: each case makes arguments on a backend, breaks the
// contract in one place (a wrong shape, dtype, device or range) and says the exact message the
// contract must give. The same table runs on CpuOps (tests/unit/test_ops_contract.cpp) and on
// CudaOps (tests/gpu/test_ops_contract.cpp): the messages differ only in the backend's device
// and activation dtype, which the expected text takes from the backend.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/core/dtype.hpp"

namespace moetron::test {

struct BrokenCall {
  std::function<void()> call;  // must throw moetron::Error
  std::string message;         // its exact message
};

struct ContractCase {
  std::string name;
  std::function<BrokenCall(Ops&)> make;
};

namespace contract_detail {

inline std::string act(const Ops& ops) { return dtype_name(ops.activation_dtype()); }
inline std::string dev(const Ops& ops) { return ops.device() == Device::Cpu ? "cpu" : "cuda"; }
inline Tensor activation(Ops& ops, std::vector<int64_t> shape) {
  return ops.alloc(ops.activation_dtype(), std::move(shape));
}
// A tensor that claims to live on the other device; the contract rejects it before any byte
// is read, so it needs no memory.
inline Tensor on_other_device(Ops& ops, DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.device = ops.device() == Device::Cpu ? Device::Cuda : Device::Cpu;
  return t;
}

}  // namespace contract_detail

inline std::vector<ContractCase> ops_contract_cases() {
  using namespace contract_detail;
  std::vector<ContractCase> cases;
  cases.push_back({"rmsnorm weight does not divide x", [](Ops& ops) {
    Tensor x = activation(ops, {3, 8}), w = activation(ops, {5}), out = activation(ops, {3, 8});
    return BrokenCall{[&ops, x, w, out]() mutable { ops.rmsnorm(x, w, 1e-6f, out); },
                      "Ops::rmsnorm: w has 5 elements, x " + x.describe() +
                          " is not a whole number of rows of that width"};
  }});
  cases.push_back({"rmsnorm weight of the wrong dtype", [](Ops& ops) {
    Tensor x = activation(ops, {3, 8}), w = ops.alloc(DType::I32, {8}),
           out = activation(ops, {3, 8});
    return BrokenCall{[&ops, x, w, out]() mutable { ops.rmsnorm(x, w, 1e-6f, out); },
                      "Ops::rmsnorm: w must be " + act(ops) + " on " + dev(ops) + ", got " +
                          w.describe()};
  }});
  cases.push_back({"add_rmsnorm delta of the wrong size", [](Ops& ops) {
    Tensor r = activation(ops, {2, 8}), delta = activation(ops, {3, 8}),
           w = activation(ops, {8}), out = activation(ops, {2, 8});
    return BrokenCall{[&ops, r, delta, w, out]() mutable { ops.add_rmsnorm(r, delta, w, 1e-6f, out); },
                      "Ops::add_rmsnorm: delta has 24 elements, expected 16 (the size of residual)"};
  }});
  cases.push_back({"linear weight of the wrong width", [](Ops& ops) {
    Tensor x = activation(ops, {2, 8}), w = activation(ops, {4, 7}), out = activation(ops, {2, 4});
    return BrokenCall{[&ops, x, w, out]() mutable { ops.linear(x, w, nullptr, out); },
                      "Ops::linear: w " + w.describe() + " must be [N, 8] for x " + x.describe()};
  }});
  cases.push_back({"linear output of an integer dtype", [](Ops& ops) {
    Tensor x = activation(ops, {2, 8}), w = activation(ops, {4, 8}),
           out = ops.alloc(DType::I32, {2, 4});
    const std::string allowed =
        ops.activation_dtype() == DType::F32 ? "F32" : act(ops) + " or F32";
    return BrokenCall{[&ops, x, w, out]() mutable { ops.linear(x, w, nullptr, out); },
                      "Ops::linear: out must be " + allowed + " on " + dev(ops) + ", got " +
                          out.describe()};
  }});
  cases.push_back({"linear bias of the wrong length", [](Ops& ops) {
    Tensor x = activation(ops, {2, 8}), w = activation(ops, {4, 8}), b = activation(ops, {5}),
           out = activation(ops, {2, 4});
    return BrokenCall{[&ops, x, w, b, out]() mutable { ops.linear(x, w, &b, out); },
                      "Ops::linear: bias has 5 elements, expected 4 (one per row of w)"};
  }});
  cases.push_back({"embed ids of a float dtype", [](Ops& ops) {
    Tensor ids = ops.alloc(DType::F32, {3}), table = activation(ops, {10, 8}),
           out = activation(ops, {3, 8});
    return BrokenCall{[&ops, ids, table, out]() mutable { ops.embed(ids, table, out); },
                      "Ops::embed: ids must be I32 on " + dev(ops) + ", got " + ids.describe()};
  }});
  cases.push_back({"add_inplace operand on the other device", [](Ops& ops) {
    Tensor acc = activation(ops, {2, 3});
    Tensor x = on_other_device(ops, ops.activation_dtype(), {2, 3});
    return BrokenCall{[&ops, acc, x]() mutable { ops.add_inplace(acc, x); },
                      "Ops::add_inplace: x must be " + act(ops) + " on " + dev(ops) + ", got " +
                          x.describe()};
  }});
  cases.push_back({"rope head_dim that does not divide q", [](Ops& ops) {
    Tensor q = activation(ops, {2, 48}), k = activation(ops, {2, 32}),
           pos = ops.alloc(DType::I32, {2});
    return BrokenCall{[&ops, q, k, pos]() mutable { ops.rope(q, k, pos, 32, 1e4); },
                      "Ops::rope: head_dim 32 must be even and divide the widths of q " +
                          q.describe() + " and k " + k.describe()};
  }});
  cases.push_back({"attention heads that are not whole groups", [](Ops& ops) {
    BatchTensors b;
    b.num_tokens = 1;
    b.num_seqs = 1;
    b.max_blocks_per_seq = 1;
    b.block_size = 4;
    Tensor q = activation(ops, {1, 6 * 16}), out = activation(ops, {1, 6 * 16});
    KvCache cache{activation(ops, {2, 4, 4, 16}), activation(ops, {2, 4, 4, 16})};
    return BrokenCall{[&ops, q, out, cache, b]() mutable {
                        ops.attention(q, cache, b, 6, 4, 16, 0.25f, out);
                      },
                      "Ops::attention: 6 query heads are not whole groups over 4 KV heads"};
  }});
  cases.push_back({"kv_append cache block size differs from the batch's", [](Ops& ops) {
    BatchTensors b;
    b.num_tokens = 2;
    b.block_size = 8;
    b.slot_mapping = ops.alloc(DType::I32, {2});
    Tensor k = activation(ops, {2, 32}), v = activation(ops, {2, 32});
    KvCache cache{activation(ops, {2, 4, 2, 16}), activation(ops, {2, 4, 2, 16})};
    return BrokenCall{[&ops, k, v, cache, b]() mutable { ops.kv_append(k, v, cache, b); },
                      "Ops::kv_append: cache.k " + cache.k.describe() + " and cache.v " +
                          cache.v.describe() +
                          " must both be [blocks, 8 (batch.block_size), kv_heads, head_dim]"};
  }});
  cases.push_back({"router_topk k larger than the experts", [](Ops& ops) {
    Tensor logits = activation(ops, {3, 4}), ids = ops.alloc(DType::I32, {3, 5}),
           w = ops.alloc(DType::F32, {3, 5});
    return BrokenCall{[&ops, logits, ids, w]() mutable { ops.router_topk(logits, 5, true, ids, w); },
                      "Ops::router_topk: top-k 5 outside [1, 4] (the experts)"};
  }});
  cases.push_back({"moe_experts weights of an integer dtype", [](Ops& ops) {
    Tensor x = activation(ops, {3, 8}), ids = ops.alloc(DType::I32, {3, 2}),
           w = ops.alloc(DType::I32, {3, 2}), out = activation(ops, {3, 8});
    return BrokenCall{[&ops, x, ids, w, out]() mutable { ops.moe_experts(x, ids, w, {}, out); },
                      "Ops::moe_experts: weights must be F32 on " + dev(ops) + ", got " +
                          w.describe()};
  }});
  cases.push_back({"moe_experts expecting more slots than ids holds", [](Ops& ops) {
    Tensor x = activation(ops, {3, 8}), ids = ops.alloc(DType::I32, {3, 2}),
           w = ops.alloc(DType::F32, {3, 2}), out = activation(ops, {3, 8});
    return BrokenCall{[&ops, x, ids, w, out]() mutable { ops.moe_experts(x, ids, w, {}, out, 7); },
                      "Ops::moe_experts: expected_slots 7 outside [-1, 6] (the slots of ids " + ids.describe() + ")"};
  }});
  cases.push_back({"moe_experts gate_up of the wrong width", [](Ops& ops) {
    Tensor x = activation(ops, {3, 8}), ids = ops.alloc(DType::I32, {3, 2}),
           w = ops.alloc(DType::F32, {3, 2}), out = activation(ops, {3, 8});
    ExpertWeights e{0, 2, activation(ops, {2, 8, 16}), activation(ops, {2, 8, 4})};
    return BrokenCall{[&ops, x, ids, w, out, e]() mutable { ops.moe_experts(x, ids, w, e, out); },
                      "Ops::moe_experts: experts.gate_up " + e.gate_up.describe() +
                          " is not [2, 8, 8]"};
  }});
  cases.push_back({"swiglu_mlp down of the wrong height", [](Ops& ops) {
    Tensor x = activation(ops, {2, 8}), gu = activation(ops, {8, 8}), down = activation(ops, {6, 4}),
           out = activation(ops, {2, 8});
    return BrokenCall{[&ops, x, gu, down, out]() mutable { ops.swiglu_mlp(x, gu, down, out); },
                      "Ops::swiglu_mlp: gate_up " + gu.describe() + " and down " +
                          down.describe() + " are not [2I, 8] and [8, I]"};
  }});
  cases.push_back({"scatter_add_rows scale of the wrong length", [](Ops& ops) {
    Tensor acc = activation(ops, {4, 8}), x = activation(ops, {3, 8}),
           rows = ops.alloc(DType::I32, {3}), scale = ops.alloc(DType::F32, {2});
    return BrokenCall{[&ops, acc, x, rows, scale]() mutable { ops.scatter_add_rows(acc, x, rows, scale); },
                      "Ops::scatter_add_rows: scale has 2 elements, expected 3 (one per row of x)"};
  }});
  cases.push_back({"gather_rows out of the wrong width", [](Ops& ops) {
    Tensor x = activation(ops, {4, 8}), rows = ops.alloc(DType::I32, {3}),
           out = activation(ops, {3, 6});
    return BrokenCall{[&ops, x, rows, out]() mutable { ops.gather_rows(x, rows, out); },
                      "Ops::gather_rows: out " + out.describe() + " must be [3, 8]"};
  }});
  cases.push_back({"copy_columns past the last column", [](Ops& ops) {
    Tensor src = ops.alloc(DType::F32, {2, 33}), dst = ops.alloc(DType::F32, {2, 101});
    return BrokenCall{[&ops, src, dst]() mutable { ops.copy_columns(src, 33, dst, 69); },
                      "Ops::copy_columns: 33 columns of src " + src.describe() + " do not fit dst " +
                          dst.describe() + " at column 69"};
  }});
  cases.push_back({"copy_columns wider than the source", [](Ops& ops) {
    Tensor src = ops.alloc(DType::F32, {2, 33}), dst = ops.alloc(DType::F32, {2, 101});
    return BrokenCall{[&ops, src, dst]() mutable { ops.copy_columns(src, 34, dst, 0); },
                      "Ops::copy_columns: 34 columns of src " + src.describe() + " do not fit dst " +
                          dst.describe() + " at column 0"};
  }});
  cases.push_back({"copy between dtypes", [](Ops& ops) {
    Tensor src = activation(ops, {3, 4}), dst = ops.alloc(DType::I32, {3, 4});
    return BrokenCall{[&ops, src, dst]() mutable { ops.copy(src, dst); },
                      "Ops::copy: src " + src.describe() + " and dst " + dst.describe() +
                          " differ in dtype or size"};
  }});
  cases.push_back({"to_float output of the wrong size", [](Ops& ops) {
    Tensor x = activation(ops, {3, 4}), out = ops.alloc(DType::F32, {3, 5});
    return BrokenCall{[&ops, x, out]() mutable { ops.to_float(x, out); },
                      "Ops::to_float: out has 15 elements, expected 12 (the size of x)"};
  }});
  cases.push_back({"argmax_rows ids of the wrong length", [](Ops& ops) {
    Tensor logits = ops.alloc(DType::F32, {3, 50}), ids = ops.alloc(DType::I32, {2});
    return BrokenCall{[&ops, logits, ids]() mutable { ops.argmax_rows(logits, ids); },
                      "Ops::argmax_rows: ids has 2 elements, expected 3 (one per row of logits)"};
  }});
  cases.push_back({"sample_rows with too few settings", [](Ops& ops) {
    Tensor logits = ops.alloc(DType::F32, {3, 50}), ids = ops.alloc(DType::I32, {3});
    return BrokenCall{[&ops, logits, ids]() mutable {
                        ops.sample_rows(logits, std::vector<SamplingParams>(2),
                                        std::vector<uint64_t>(3), ids);
                      },
                      "Ops::sample_rows: 2 settings and 3 steps for logits " + logits.describe() +
                          " (one each per row)"};
  }});
  cases.push_back({"pack_dispatch tokens past the end of ids", [](Ops& ops) {
    Tensor ids = ops.alloc(DType::I32, {4, 2}), w = ops.alloc(DType::F32, {4, 2}),
           rows = ops.alloc(DType::I32, {8}), experts = ops.alloc(DType::I32, {8, 1}),
           scales = ops.alloc(DType::F32, {8});
    return BrokenCall{[&ops, ids, w, rows, experts, scales]() mutable {
                        ops.pack_dispatch(ids, w, 2, 5, 4, 1, 4, rows, experts, scales);
                      },
                      "Ops::pack_dispatch: tokens [2, 5) outside ids " + ids.describe()};
  }});
  cases.push_back({"pack_from_peers rows not a block per peer", [](Ops& ops) {
    Tensor ids = ops.alloc(DType::I32, {4, 2}), tables = ops.alloc(DType::I32, {2, 8, 3}),
           senders = ops.alloc(DType::I32, {3, 2}), rows = ops.alloc(DType::I32, {8}),
           experts = ops.alloc(DType::I32, {12, 1});
    return BrokenCall{[&ops, ids, tables, senders, rows, experts]() mutable {
                        ops.pack_from_peers(ids, tables, senders, 1, 4, 1, 0, 4, rows, experts);
                      },
                      "Ops::pack_from_peers: rows has 8 elements, expected 12 (capacity entries per peer)"};
  }});
  cases.push_back({"accumulate_expert_counts counts of the wrong dtype", [](Ops& ops) {
    Tensor ids = ops.alloc(DType::I32, {4, 2}), counts = ops.alloc(DType::I32, {8});
    return BrokenCall{[&ops, ids, counts]() mutable { ops.accumulate_expert_counts(ids, counts); },
                      "Ops::accumulate_expert_counts: counts must be I64 on " + dev(ops) +
                          ", got " + counts.describe()};
  }});
  cases.push_back({"accumulate_routing pairs not square", [](Ops& ops) {
    Tensor records = ops.alloc(DType::I32, {2, 4, 2}), counts = ops.alloc(DType::I64, {2, 8});
    Tensor pairs = ops.alloc(DType::I64, {2, 8, 4});
    return BrokenCall{[&ops, records, counts, pairs]() mutable {
                        ops.accumulate_routing(records, 4, counts, pairs);
                      },
                      "Ops::accumulate_routing: pairs " + pairs.describe() + " must be [2, 8, 8]"};
  }});
  cases.push_back({"accumulate_routing more tokens than records", [](Ops& ops) {
    Tensor records = ops.alloc(DType::I32, {2, 4, 2}), counts = ops.alloc(DType::I64, {2, 8});
    Tensor pairs = ops.alloc(DType::I64, {2, 8, 8});
    return BrokenCall{[&ops, records, counts, pairs]() mutable {
                        ops.accumulate_routing(records, 5, counts, pairs);
                      },
                      "Ops::accumulate_routing: records " + records.describe() +
                          " must be [L, R, k] with 5 tokens <= R"};
  }});
  cases.push_back({"attention_inputs qkv of the wrong width", [](Ops& ops) {
    const DType act = ops.activation_dtype();
    Tensor qkv = ops.alloc(act, {3, 40}), q = ops.alloc(act, {3, 16});
    KvCache cache{ops.alloc(act, {2, 4, 2, 8}), ops.alloc(act, {2, 4, 2, 8})};
    BatchTensors batch;
    batch.num_tokens = 3;
    batch.block_size = 4;
    batch.slot_mapping = ops.alloc(DType::I32, {3});
    Tensor positions = ops.alloc(DType::I32, {3});
    return BrokenCall{[&ops, qkv, q, cache, batch, positions]() mutable {
                        ops.attention_inputs(qkv, QkNormSpec{}, positions, 8, 10000.0, cache, batch, q);
                      },
                      "Ops::attention_inputs: qkv " + qkv.describe() + " must be [3, 48]"};
  }});
  cases.push_back({"add_row_bias bias of the wrong length", [](Ops& ops) {
    Tensor x = ops.alloc(DType::F32, {3, 8}), bias = ops.alloc(DType::F32, {7});
    return BrokenCall{[&ops, x, bias]() mutable { ops.add_row_bias(x, bias); },
                      "Ops::add_row_bias: bias has 7 elements, expected 8 (one per column of x)"};
  }});
  return cases;
}

}  // namespace moetron::test
