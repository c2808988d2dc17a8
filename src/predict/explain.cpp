#include "moetron/predict/explain.hpp"

#include <cstdio>
#include <sstream>
#include <vector>

#include "moetron/core/error.hpp"
#include "moetron/predict/plan_geometry.hpp"

namespace moetron {

namespace {

// parse_plan's and plan_problem's messages name --plan; here the plan came from --explain.
std::string as_explain_error(const std::string& message) {
  const std::string plan_option = "--plan";
  if (message.compare(0, plan_option.size(), plan_option) == 0) return "--explain" + message.substr(plan_option.size());
  return "--explain: " + message;
}

std::string shape_text(const OpShape& s) {
  std::ostringstream os;
  const std::pair<const char*, int64_t> sizes[] = {{"rows", s.rows},       {"n", s.n},         {"k", s.k},
                                                   {"context", s.context}, {"experts", s.experts},
                                                   {"call", s.call_tokens}, {"bytes", s.bytes}, {"ranks", s.ranks}};
  for (const auto& [name, value] : sizes)
    if (value >= 0) os << (os.tellp() > 0 ? " " : "") << name << "=" << value;
  return os.str();
}

// One row of a step's table: the ops of one name, shape and source, summed over the step.
struct Row {
  std::string name, shape, source;
  int64_t calls = 0;
  StepCost cost;
};

std::vector<Row> rows_of(const StepTrace& trace, int stage) {
  std::vector<Row> rows;
  for (const PricedOp& op : trace.ops) {
    if (op.stage != stage) continue;
    const std::string shape = shape_text(op.shape);
    Row* row = nullptr;
    for (Row& r : rows)
      if (r.name == op.name && r.shape == shape && r.source == op.source) row = &r;
    if (row == nullptr) row = &rows.emplace_back(Row{op.name, shape, op.source, 0, {}});
    ++row->calls;
    row->cost += op.cost;
  }
  return rows;
}

StepCost sum_of(const StepTrace& trace, int stage) {
  StepCost sum;
  for (const PricedOp& op : trace.ops)
    if (op.stage == stage) sum += op.cost;
  return sum;
}

// The rank's time off its own kernels and host work: collectives, the bubble, and the kernels
// of ranks sharing its device.
double waits_of(const StepCost& c) {
  return c.tp_comm_s + c.expert_comm_s + c.pipeline_comm_s + c.bubble_s + c.host_sync_s + c.sharing_s;
}

void print_rows(std::ostringstream& os, const std::vector<Row>& rows) {
  char line[512];
  std::snprintf(line, sizeof line, "  %-46s %5s %-44s %9s %9s %8s %8s %8s %8s  %s\n", "op", "n", "shape", "us/call",
                "kernel us", "gap us", "wait us", "host us", "emu us", "source");
  os << line;
  for (const Row& r : rows) {
    const StepCost& c = r.cost;
    std::string source = r.source;
    if (c.imbalance_s != 0) {
      std::ostringstream note;
      note.precision(4);
      note << source << ": " << c.imbalance_s * 1e6 << " us, inside the expert calls' kernel time";
      source = note.str();
    }
    std::snprintf(line, sizeof line, "  %-46s %5lld %-44s %9.3f %9.2f %8.2f %8.2f %8.2f %8.2f  ", r.name.c_str(),
                  static_cast<long long>(r.calls), r.shape.c_str(), c.compute_s * 1e6 / static_cast<double>(r.calls),
                  c.compute_s * 1e6, c.kernel_overhead_s * 1e6, waits_of(c) * 1e6, c.host_s * 1e6, c.emulation_s * 1e6);
    os << line << source << "\n";
  }
}

void print_fields(std::ostringstream& os, const char* label, const StepCost& c) {
  char line[512];
  std::snprintf(line, sizeof line,
                "  %-12s compute %.2f (imbalance %.2f), kernel gaps %.2f, tp comm %.2f, expert comm %.2f, pipeline "
                "comm %.2f, bubble %.2f, host sync %.2f, host %.2f, device sharing %.2f | emulation %.2f\n",
                label, c.compute_s * 1e6, c.imbalance_s * 1e6, c.kernel_overhead_s * 1e6, c.tp_comm_s * 1e6,
                c.expert_comm_s * 1e6, c.pipeline_comm_s * 1e6, c.bubble_s * 1e6, c.host_sync_s * 1e6, c.host_s * 1e6,
                c.sharing_s * 1e6, c.emulation_s * 1e6);
  os << line;
}

void print_step(std::ostringstream& os, const char* kind, const StepShape& shape, const StepTrace& trace,
                const StepCost& reported, const Plan& plan) {
  os << "\n" << kind << " step: " << shape.sequences << " sequences a replica x " << shape.tokens_per_sequence
     << " token(s), context " << shape.context << ", " << shape.micro_batches << " micro-batch(es); " << trace.gaps
     << "\n";
  os << "stage " << trace.reported_stage << " of " << plan.pp
     << (plan.pp > 1 ? " (the busiest: the one the prediction reports)" : "") << ", in the order forward.cpp runs "
     << "its ops (n: times a step; us per step):\n";
  print_rows(os, rows_of(trace, trace.reported_stage));
  const std::vector<Row> own = rows_of(trace, -1);
  if (!own.empty()) {
    os << "the step's own:\n";
    print_rows(os, own);
  }
  os << "totals, us:\n";
  print_fields(os, "prediction", reported);
  print_fields(os, "sum of ops", reported_sum(trace));
  char line[256];
  std::snprintf(line, sizeof line,
                "  step %.2f us (a real rank: all but emulation); an emulated rank measures compute + kernel gaps + "
                "emulation + host = %.2f us\n",
                reported.total_s() * 1e6, reported.emulated_rank_s() * 1e6);
  os << line;
  for (int s = 0; s < plan.pp; ++s) {
    if (s == trace.reported_stage) continue;
    const StepCost other = sum_of(trace, s);
    std::snprintf(line, sizeof line, "  stage %d (not reported): compute + kernel gaps + emulation + host = %.2f us\n", s,
                  other.emulated_rank_s() * 1e6);
    os << line;
  }
}

}  // namespace

Plan explained_plan(const std::string& text, const ModelConfig& config, const Cluster& cluster) {
  Plan plan;
  try {
    plan = parse_plan(text);
  } catch (const Error& e) {
    throw Error(as_explain_error(e.what()));
  }
  MOETRON_CHECK(plan.world_size() == cluster.ranks, "--explain " << plan.to_string() << " has " << plan.world_size()
                                                                 << " ranks (pp x tp x dp), the cluster --ranks "
                                                                 << cluster.ranks);
  const std::string problem = plan_problem(plan, config);
  MOETRON_CHECK(problem.empty(), as_explain_error(problem));
  return plan;
}

PlanExplanation explain_plan(const ModelConfig& config, const Plan& plan, const Workload& workload,
                             const Cluster& cluster, const CostModel& cost, const PredictorOptions& options) {
  PlanExplanation e;
  e.prediction = predict_plan(config, plan, workload, cluster, cost, options);
  MOETRON_CHECK(e.prediction.fits, "--explain " << plan.to_string() << " is not feasible on this cluster: "
                                                << e.prediction.refusal);
  const PlanGeometry g = plan_geometry(config, plan, cluster.ranks_per_node);
  step_cost(g, options.expert_shares, e.prediction.decode_shape, cost, &e.decode);
  step_cost(g, options.expert_shares, e.prediction.prefill_shape, cost, &e.prefill);
  return e;
}

StepCost reported_sum(const StepTrace& trace) {
  StepCost sum = sum_of(trace, trace.reported_stage);
  sum += sum_of(trace, -1);
  return sum;
}

std::string format_explanation(const PlanExplanation& e) {
  const PlanPrediction& p = e.prediction;
  const int last = p.plan.world_size() - 1;
  std::ostringstream os;
  os << "explain   " << p.plan.to_string() << ": the shard of each stage's rank (dp 0, tp 0); every rank of a "
     << "stage holds the same shapes (plan_problem keeps shards even)";
  const bool collectives = p.plan.world_size() > 1;
  if (collectives) {
    os << ".\n          An emulated rank prices differently from a real one: `moetron run --emulate-rank " << last
       << " --emulate-world " << p.plan.world_size() << "` (the last rank, as perf/validate_predictor.py runs it) "
       << "replaces each collective by the local copies marked 'emulated copy' (the emu column) and measures compute + "
       << "kernel gaps + emulation + host (its own bookkeeping); a real rank spends the wait column instead (its "
       << "collectives, and the kernels of ranks sharing its device). Both are shown.";
    if (p.plan.pp > 1)
      os << " The last rank is in stage " << p.plan.pp - 1 << "; the tables show the stage the prediction reports.";
  }
  os << "\n          uniform routing unless --routing: the busiest expert set is priced.\n";
  print_step(os, "decode", p.decode_shape, e.decode, p.decode, p.plan);
  print_step(os, "prefill", p.prefill_shape, e.prefill, p.prefill, p.plan);
  return os.str();
}

}  // namespace moetron
