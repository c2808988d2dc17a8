#include "moetron/bench/profile.hpp"

#include <algorithm>

#include "moetron/core/error.hpp"

namespace moetron {

namespace tables {
const TableSpec kGemm{"gemm", {"n", "k"}, "tokens"};
const TableSpec kMoeExperts{"moe_experts", {"hidden", "expert_cols", "experts"}, "tokens_per_expert"};
const TableSpec kMoeExpertsGemv{"moe_experts_gemv", {"hidden", "expert_cols", "experts"}, "tokens_per_expert"};
const TableSpec kAttentionDecode{"attention_decode", {"q_heads", "kv_heads", "head_dim", "context"}, "batch"};
const TableSpec kAttentionPrefill{"attention_prefill", {"q_heads", "kv_heads", "head_dim", "context"}, "rows"};
const TableSpec kMemoryBound{"memory_bound", {"kernel"}, "bytes"};
const TableSpec kHbmCopy{"hbm_copy", {"buffers"}, "bytes"};
const TableSpec kKernelGap{"kernel_gap", {"in_graph"}, "kernels"};
const TableSpec kAttentionInputs{"attention_inputs", {"q_heads", "kv_heads", "head_dim"}, "tokens"};
const TableSpec kSampling{"sampling", {"vocab"}, "rows"};
const TableSpec kHostStep{"host_step", {"experts", "top_k", "layers"}, "tokens"};
const TableSpec kLaunchCost{"launch_cost", {"op"}, "calls"};
const TableSpec kAllreduce{"allreduce", {"ranks", "spans_nodes"}, "bytes"};
const TableSpec kAlltoall{"alltoall", {"ranks", "spans_nodes"}, "bytes"};
const TableSpec kSendRecv{"send_recv", {"ranks", "spans_nodes"}, "bytes"};
const TableSpec kBroadcast{"broadcast", {"ranks", "spans_nodes"}, "bytes"};

const std::vector<const TableSpec*>& all() {
  static const std::vector<const TableSpec*> specs = {
      &kGemm,     &kMoeExperts, &kMoeExpertsGemv, &kAttentionDecode, &kAttentionPrefill, &kMemoryBound, &kHbmCopy,
      &kKernelGap, &kAttentionInputs, &kSampling, &kHostStep, &kLaunchCost, &kAllreduce, &kAlltoall, &kSendRecv,
      &kBroadcast};
  return specs;
}
}  // namespace tables

const std::vector<std::string> kMemoryKernels = {"add_inplace", "rmsnorm", "rope"};

const Series* SeriesTable::find(const std::vector<int64_t>& key) const {
  for (const Series& s : series)
    if (s.key == key) return &s;
  return nullptr;
}

void SeriesTable::add(const std::vector<int64_t>& key, int64_t size, const Measurement& m) {
  MOETRON_CHECK(key.size() == key_names.size(), "profile table of " << size_name << ": a key of " << key.size()
                                                                    << " values for " << key_names.size() << " columns");
  auto it = std::find_if(series.begin(), series.end(), [&](const Series& s) { return s.key == key; });
  if (it == series.end()) it = series.insert(series.end(), Series{key, {}, {}});
  Series* s = &*it;
  MOETRON_CHECK(s->sizes.empty() || size > s->sizes.back(),
                "profile table of " << size_name << ": sizes must ascend (" << size << " after " << s->sizes.back() << ")");
  s->sizes.push_back(size);
  s->times.push_back(m);
}

void SeriesTable::keep_faster(const std::vector<int64_t>& key, int64_t size, const Measurement& m) {
  if (const Series* found = find(key)) {
    Series& s = series[static_cast<size_t>(found - series.data())];
    const auto at = std::find(s.sizes.begin(), s.sizes.end(), size);
    if (at != s.sizes.end()) {
      Measurement& kept = s.times[static_cast<size_t>(at - s.sizes.begin())];
      if (m.median_s < kept.median_s) kept = m;
      return;
    }
  }
  add(key, size, m);
}

SeriesTable& HardwareProfile::table(const TableSpec& spec) {
  auto it = tables.find(spec.name);
  if (it == tables.end()) it = tables.emplace(spec.name, SeriesTable{spec.key_names, spec.size_name, {}}).first;
  return it->second;
}

const SeriesTable* HardwareProfile::find(const TableSpec& spec) const {
  auto it = tables.find(spec.name);
  return it == tables.end() ? nullptr : &it->second;
}

ExpertGemmRule expert_gemm_rule_of_profile(int format_version, const std::string& kernels) {
  // Ops::kernel_settings: "expert_gemm=PATH,..." (comma-separated, expert_gemm first today).
  const std::string key = "expert_gemm=";
  size_t at = kernels.rfind(key, 0) == 0 ? 0 : kernels.find("," + key);
  if (at == std::string::npos) return expert_gemm_rule_of_format(format_version);
  at = kernels.find(key, at) + key.size();
  return expert_gemm_rule_of_path_name(kernels.substr(at, kernels.find(',', at) - at),
                                       expert_gemm_rule_of_format(format_version));
}

std::map<std::string, int64_t> profile_model_shapes(const ModelConfig& c) {
  return {{"hidden_size", c.hidden_size},
          {"num_attention_heads", c.num_heads},
          {"num_key_value_heads", c.num_kv_heads},
          {"head_dim", c.head_dim},
          {"intermediate_size", c.intermediate_size},
          {"moe_intermediate_size", c.moe_intermediate_size},
          {"shared_expert_intermediate_size", c.shared_expert_intermediate_size},
          {"num_experts", c.num_experts},
          {"num_experts_per_tok", c.top_k},
          {"vocab_size", c.vocab_size}};
}

}  // namespace moetron
