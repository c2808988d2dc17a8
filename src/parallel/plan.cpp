#include "moetron/parallel/plan.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <tuple>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

namespace {

constexpr const char* kPlanForm =
    "expected pp=P,tp=T,dp=D,ep=E[,mb=M] (omitted factors are 1; mb, micro-batches a step on a pipeline, is pp "
    "when omitted) or auto";

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// Digits only, at most 9 of them, so the product of four factors cannot overflow int64.
int parse_factor(const std::string& token, const std::string& value) {
  bool digits =
      !value.empty() && value.size() <= 9 &&
      std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  MOETRON_CHECK(digits,
                "--plan: '" << token << "' is not a positive integer factor (" << kPlanForm << ")");
  int v = std::stoi(value);
  MOETRON_CHECK(v > 0, "--plan: '" << token << "' must be positive");
  return v;
}

bool has_dense_layers(const ModelConfig& c) {
  for (int64_t l = 0; l < c.num_layers; ++l)
    if (!is_moe_layer(c, l)) return true;
  return false;
}

std::vector<int> divisors(int n) {
  std::vector<int> d;
  for (int i = 1; i <= n; ++i)
    if (n % i == 0) d.push_back(i);
  return d;
}


std::ostream& operator<<(std::ostream& os, const Range& r) {
  return os << "[" << r.begin << ", " << r.end << ")";
}

}  // namespace

bool is_moe_layer(const ModelConfig& c, int64_t layer) {
  if (layer < static_cast<int64_t>(c.layer_is_moe.size())) return c.layer_is_moe[layer];
  return c.num_experts > 0;
}

std::string Plan::to_string() const {
  std::ostringstream os;
  os << "pp=" << pp << ",tp=" << tp << ",dp=" << dp << ",ep=" << ep;
  if (micro_batch_count() != pp) os << ",mb=" << micro_batch_count();
  return os.str();
}

Plan parse_plan(const std::string& text) {
  MOETRON_CHECK(!trim(text).empty(), "--plan: empty value (" << kPlanForm << ")");
  Plan plan;
  std::map<std::string, std::string> seen;  // key -> its token, for the duplicate message
  std::stringstream ss(text);
  std::string raw;
  while (std::getline(ss, raw, ',')) {
    std::string token = trim(raw);
    MOETRON_CHECK(!token.empty(), "--plan: empty entry in '" << text << "' (" << kPlanForm << ")");
    size_t eq = token.find('=');
    MOETRON_CHECK(eq != std::string::npos,
                  "--plan: '" << token << "' is not key=value (" << kPlanForm << ")");
    std::string key = trim(token.substr(0, eq));
    int* slot = key == "pp"   ? &plan.pp
                : key == "tp" ? &plan.tp
                : key == "dp" ? &plan.dp
                : key == "ep" ? &plan.ep
                : key == "mb" ? &plan.mb
                              : nullptr;
    MOETRON_CHECK(slot, "--plan: unknown factor '" << key << "' in '" << token
                                                   << "' (expected pp, tp, dp, ep or mb)");
    auto [prev, fresh] = seen.emplace(key, token);
    MOETRON_CHECK(fresh, "--plan: '" << key << "' given twice ('" << prev->second << "' and '"
                                     << token << "')");
    *slot = parse_factor(token, trim(token.substr(eq + 1)));
  }
  // getline drops a trailing empty field: "tp=2," must still be refused.
  MOETRON_CHECK(trim(text).back() != ',',
                "--plan: empty entry in '" << text << "' (" << kPlanForm << ")");
  return plan;
}

Coords coords_of(const Plan& plan, int rank) {
  MOETRON_ASSERT(rank >= 0 && rank < plan.world_size());
  Coords c;
  c.tp = rank % plan.tp;
  c.dp = (rank / plan.tp) % plan.dp;
  c.pp = rank / (plan.tp * plan.dp);
  return c;
}

int rank_of(const Plan& plan, const Coords& c) {
  MOETRON_ASSERT(c.pp >= 0 && c.pp < plan.pp && c.dp >= 0 && c.dp < plan.dp && c.tp >= 0 &&
                 c.tp < plan.tp);
  return (c.pp * plan.dp + c.dp) * plan.tp + c.tp;
}

Range split_range(int64_t total, int64_t parts, int64_t index) {
  MOETRON_ASSERT(parts > 0 && index >= 0 && index < parts);
  int64_t base = total / parts, extra = total % parts;
  int64_t begin = index * base + std::min(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

std::string plan_problem(const Plan& p, const ModelConfig& c) {
  std::ostringstream os;
  os << "--plan " << p.to_string() << ": ";
  if (p.pp < 1 || p.tp < 1 || p.dp < 1 || p.ep < 1 || p.mb < 0) {
    os << "every factor must be positive";
  } else if (p.micro_batch_count() > kMaxMicroBatches) {
    os << "mb=" << p.mb << " micro-batches: at most " << kMaxMicroBatches;
  } else if (p.pp == 1 && p.micro_batch_count() != 1) {
    os << "mb=" << p.mb << " splits a step between pipeline stages, and pp=1 has one stage";
  } else if (c.num_heads % p.tp != 0) {
    os << "the " << c.num_heads << " attention heads do not split evenly over tp=" << p.tp;
  } else if (p.tp <= c.num_kv_heads && c.num_kv_heads % p.tp != 0) {
    os << "the " << c.num_kv_heads << " key/value heads do not split evenly over tp=" << p.tp;
  } else if (p.tp > c.num_kv_heads && p.tp % c.num_kv_heads != 0) {
    os << "tp=" << p.tp << " exceeds the " << c.num_kv_heads
       << " key/value heads but is not a multiple of them, so a rank's query heads would need "
          "parts of two key/value heads";
  } else if (p.stage_size() % p.ep != 0) {
    os << "ep=" << p.ep << " does not divide the tp*dp=" << p.stage_size()
       << " ranks of a pipeline stage";
  } else if (c.num_experts % p.ep != 0) {
    os << "the " << c.num_experts << " experts do not split into ep=" << p.ep << " equal sets";
  } else if (c.num_layers < p.pp) {
    os << "the model has " << c.num_layers << " layers, fewer than pp=" << p.pp << " stages";
  } else if (c.num_experts > 0 && c.moe_intermediate_size % p.expert_shards() != 0) {
    os << "the expert intermediate size " << c.moe_intermediate_size << " does not split into the "
       << p.expert_shards() << " shards (tp*dp/ep) that share each expert set";
  } else if (has_dense_layers(c) && c.intermediate_size % p.tp != 0) {
    os << "the dense MLP intermediate size " << c.intermediate_size
       << " does not split evenly over tp=" << p.tp;
  } else if (c.shared_expert_intermediate_size % p.tp != 0) {
    os << "the shared expert intermediate size " << c.shared_expert_intermediate_size
       << " does not split evenly over tp=" << p.tp;
  } else {
    return "";
  }
  return os.str();
}

std::string cuda_plan_problem(const Plan& p, const ModelConfig& c) {
  if (c.num_experts == 0) return "";
  const int64_t m = kCudaExpertWidthMultiple, slice = c.moe_intermediate_size / p.expert_shards();
  std::ostringstream os;
  os << "--plan " << p.to_string() << ": ";
  if (c.hidden_size % m != 0) {
    os << "the hidden size " << c.hidden_size << " is not a multiple of " << m << ", which the CUDA expert kernels need";
  } else if (slice % m != 0) {
    os << "each rank's slice of an expert, " << c.moe_intermediate_size << " / " << p.expert_shards()
       << " shards (tp*dp/ep) = " << slice << " columns, is not a multiple of " << m
       << ", which the CUDA expert kernels need";
  } else {
    return "";
  }
  return os.str();
}

void validate_plan_for_backend(const Plan& plan, const ModelConfig& config, const std::string& backend) {
  if (backend != "cuda") return;
  const std::string problem = cuda_plan_problem(plan, config);
  MOETRON_CHECK(problem.empty(), problem);
}

ShardLayout layout_for(const Plan& plan, const ModelConfig& c, int rank) {
  std::string problem = plan_problem(plan, c);
  MOETRON_CHECK(problem.empty(), problem);
  MOETRON_CHECK(rank >= 0 && rank < plan.world_size(), "--plan " << plan.to_string() << ": rank "
                                                                 << rank << " is outside its "
                                                                 << plan.world_size() << " ranks");
  ShardLayout l;
  l.coords = coords_of(plan, rank);
  l.stage_index = stage_index(plan, l.coords);
  ShardSpec& s = l.shard;
  const auto set = [](int64_t& begin, int64_t& count, Range r) { begin = r.begin, count = r.size(); };
  const Range layers = split_range(c.num_layers, plan.pp, l.coords.pp);
  s.layer_begin = layers.begin;
  s.layer_end = layers.end;
  s.first_stage = l.coords.pp == 0;
  s.last_stage = l.coords.pp == plan.pp - 1;

  set(s.q_head_begin, s.q_head_count, split_range(c.num_heads, plan.tp, l.coords.tp));
  if (plan.tp > c.num_kv_heads) {
    // tp / kv ranks in a row use the same kv head; it is the one their q heads map to.
    s.kv_replication = plan.tp / c.num_kv_heads;
    set(s.kv_head_begin, s.kv_head_count, {l.coords.tp / s.kv_replication, l.coords.tp / s.kv_replication + 1});
  } else {
    set(s.kv_head_begin, s.kv_head_count, split_range(c.num_kv_heads, plan.tp, l.coords.tp));
  }
  if (has_dense_layers(c))
    set(s.mlp_col_begin, s.mlp_col_count, split_range(c.intermediate_size, plan.tp, l.coords.tp));
  set(s.shared_col_begin, s.shared_col_count,
      split_range(c.shared_expert_intermediate_size, plan.tp, l.coords.tp));

  l.expert_shards = plan.expert_shards();
  l.expert_set = l.stage_index / l.expert_shards;
  l.expert_shard = l.stage_index % l.expert_shards;
  set(s.expert_begin, s.expert_count, split_range(c.num_experts, plan.ep, l.expert_set));
  if (c.num_experts > 0)
    set(s.expert_col_begin, s.expert_col_count,
        split_range(c.moe_intermediate_size, l.expert_shards, l.expert_shard));
  set(s.vocab_begin, s.vocab_count, vocab_shard(c.vocab_size, plan.tp, l.coords.tp));
  s.vocab_rows = vocab_shard_rows(c.vocab_size, plan.tp);
  s.holds_o_bias = l.coords.tp == 0;
  return l;
}

int64_t weight_shard_params(const ModelConfig& c, const ShardSpec& s) {
  const int64_t h = c.hidden_size;
  const int64_t q = s.q_head_count * c.head_dim, kv = s.kv_head_count * c.head_dim;
  int64_t params = 0;
  for (int64_t layer = s.layer_begin; layer < s.layer_end; ++layer) {
    params += 2 * h;                   // input and post-attention norms
    params += 2 * h * q + 2 * h * kv;  // q, o and k, v projections
    if (c.qkv_bias) params += q + 2 * kv;
    if (c.o_bias) params += h;
    if (c.qk_norm == QkNorm::WholeProjection) params += q + kv;
    if (c.qk_norm == QkNorm::PerHead) params += 2 * c.head_dim;
    if (is_moe_layer(c, layer)) {
      params += c.num_experts * h;  // router, replicated
      params += s.expert_count * 3 * h * s.expert_col_count;
      params += 3 * h * s.shared_col_count;
      if (c.shared_expert_gate) params += h;
    } else {
      params += 3 * h * s.mlp_col_count;
    }
  }
  if (s.first_stage) params += c.vocab_size * h;      // embedding, whole
  if (s.last_stage) params += h + s.vocab_rows * h;  // final norm, LM head shard (padded)
  return params;
}

void validate_plan(const Plan& plan, const ModelConfig& config, int world_size, const MemoryBudget& memory) {
  MOETRON_CHECK(plan.pp > 0 && plan.tp > 0 && plan.dp > 0 && plan.ep > 0,
                "--plan " << plan.to_string() << ": every factor must be positive");
  MOETRON_CHECK(plan.world_size() == world_size,
                "--plan " << plan.to_string() << ": pp*tp*dp = " << plan.world_size()
                          << " but the job has " << world_size << " ranks");
  std::string problem = plan_problem(plan, config);
  MOETRON_CHECK(problem.empty(), problem);
  problem = memory_problem(plan, config, memory);
  MOETRON_CHECK(problem.empty(), problem);
}

std::string describe(const Plan& plan, const ShardLayout& l, int rank) {
  const ShardSpec& s = l.shard;
  std::ostringstream os;
  os << "rank " << rank << " (stage " << l.coords.pp << ", replica " << l.coords.dp << ", tp "
     << l.coords.tp << ") of " << plan.to_string() << ": layers " << s.layers() << ", q heads "
     << s.q_heads() << ", kv heads " << s.kv_heads() << (s.kv_replicated() ? " (replicated)" : "");
  if (s.experts().size() > 0)
    os << ", experts " << s.experts() << " columns " << s.expert_columns() << " (shard "
       << l.expert_shard << " of " << l.expert_shards << ")";
  if (s.dense_columns().size() > 0) os << ", dense columns " << s.dense_columns();
  if (s.shared_expert_columns().size() > 0)
    os << ", shared expert columns " << s.shared_expert_columns();
  if (s.first_stage) os << ", embedding";
  if (s.last_stage) {
    os << ", LM head vocab " << s.vocab();
    if (s.vocab_rows > s.vocab_count) os << " (+" << s.vocab_rows - s.vocab_count << " padding rows)";
  }
  return os.str();
}

std::vector<Plan> enumerate_plans(const ModelConfig& config, int world_size) {
  std::vector<Plan> plans;
  for (int pp : divisors(world_size))
    for (int tp : divisors(world_size / pp))
      for (int ep : divisors(world_size / pp)) {
        Plan p{pp, tp, world_size / pp / tp, ep};
        if (p.stage_size() % ep == 0 && plan_problem(p, config).empty()) plans.push_back(p);
      }
  return plans;
}

Plan choose_auto_plan(const ModelConfig& config, int world_size, const MemoryBudget& memory, int ranks_per_node) {
  MOETRON_CHECK(world_size > 0, "--plan auto: the job has no ranks");
  std::vector<Plan> plans = enumerate_plans(config, world_size);
  if (plans.empty()) {
    Plan simplest{1, 1, world_size, 1};
    MOETRON_FAIL("--plan auto: no plan can shard the model over "
                 << world_size << " ranks; the simplest, " << simplest.to_string()
                 << ", fails: " << plan_problem(simplest, config));
  }
  if (ranks_per_node <= 0) ranks_per_node = world_size;
  auto preference = [&](const Plan& p) {  // lower is better; see plan.hpp
    return std::make_tuple(p.pp, p.tp > ranks_per_node ? 1 : 0, p.tp, -p.ep);
  };
  // On CUDA, plans whose expert slices its kernels cannot run are not candidates (the budget
  // names the backend it is for; validate_plan_for_backend would refuse them later).
  if (memory.storage.backend == "cuda") {
    const Plan preferred = *std::min_element(plans.begin(), plans.end(), [&](const Plan& a, const Plan& b) {
      return preference(a) < preference(b);
    });
    plans.erase(std::remove_if(plans.begin(), plans.end(),
                               [&](const Plan& p) { return !cuda_plan_problem(p, config).empty(); }),
                plans.end());
    MOETRON_CHECK(!plans.empty(), "--plan auto: no plan over " << world_size << " ranks can run on CUDA; "
                                                                << cuda_plan_problem(preferred, config));
  }
  const bool checked = memory.bytes_per_rank > 0;
  const Plan* best = nullptr;
  const Plan* smallest = nullptr;  // the least memory, for the message when nothing fits
  int64_t smallest_need = 0;
  for (const Plan& p : plans) {
    const int64_t need = checked ? largest_memory_need(p, config, memory.storage, memory.run).need.total() : 0;
    if (!smallest || need < smallest_need) smallest = &p, smallest_need = need;
    if (need > memory.bytes_per_rank && checked) continue;
    if (!best || preference(p) < preference(*best)) best = &p;
  }
  MOETRON_CHECK(best, "--plan auto: no plan fits on " << world_size << (world_size == 1 ? " rank" : " ranks")
                          << "; the one needing the least, "
                          << memory_problem(*smallest, config, memory));
  return *best;
}

bool is_auto_plan(const std::string& text) { return trim(text) == "auto"; }

Plan resolve_plan(const std::string& text, const ModelConfig& config, int world_size, const MemoryBudget& memory,
                  int ranks_per_node) {
  Plan plan = is_auto_plan(text) ? choose_auto_plan(config, world_size, memory, ranks_per_node) : parse_plan(text);
  validate_plan(plan, config, world_size, memory);
  return plan;
}

}  // namespace moetron
