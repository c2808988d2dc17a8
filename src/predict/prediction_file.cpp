#include "moetron/predict/prediction_file.hpp"

#include <functional>
#include <utility>

#include "moetron/core/atomic_file.hpp"
#include "moetron/io/hdf5.hpp"
#include "moetron/version.hpp"

namespace moetron {

namespace {

template <class T>
std::vector<T> column(const std::vector<PlanPrediction>& ranking, const std::function<T(const PlanPrediction&)>& get) {
  std::vector<T> out;
  for (const PlanPrediction& p : ranking) out.push_back(get(p));
  return out;
}

// /plans/decode_parts and /plans/prefill_parts columns, in this order (host_s, emulation_s and
// sharing_s last: they came after the others, and a reader by position keeps the first eight).
const std::vector<std::pair<const char*, double StepCost::*>> kParts = {
    {"compute_s", &StepCost::compute_s},         {"kernel_overhead_s", &StepCost::kernel_overhead_s},
    {"tp_comm_s", &StepCost::tp_comm_s},         {"expert_comm_s", &StepCost::expert_comm_s},
    {"pipeline_comm_s", &StepCost::pipeline_comm_s}, {"bubble_s", &StepCost::bubble_s},
    {"host_sync_s", &StepCost::host_sync_s},     {"imbalance_s", &StepCost::imbalance_s},
    {"host_s", &StepCost::host_s},               {"emulation_s", &StepCost::emulation_s},
    {"sharing_s", &StepCost::sharing_s}};

void write_parts(h5::File& f, const std::string& name, const std::vector<PlanPrediction>& ranking,
                 const std::function<const StepCost&(const PlanPrediction&)>& step) {
  std::vector<double> flat;
  for (const PlanPrediction& p : ranking)
    for (const auto& part : kParts) flat.push_back(step(p).*part.second);
  f.write(name, flat, {static_cast<int64_t>(ranking.size()), static_cast<int64_t>(kParts.size())});
  std::string columns;
  for (const auto& part : kParts) columns += (columns.empty() ? "" : ",") + std::string(part.first);
  f.set_attribute(name, "columns", columns);
}

}  // namespace

void write_predictions(const std::string& path, const std::vector<PlanPrediction>& ranking,
                       const std::map<std::string, std::string>& attributes) {
  using P = PlanPrediction;
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp);
    f.set_attribute("/", "moetron_version", std::string(kVersion));
    f.set_attribute("/", "git_commit", std::string(kGitCommit));
    for (const auto& [name, value] : attributes) f.set_attribute("/", name, value);
    f.create_group("/plans");
    f.write_strings("/plans/plan", column<std::string>(ranking, [](const P& p) { return p.plan.to_string(); }));
    f.write("/plans/fits", column<int8_t>(ranking, [](const P& p) { return static_cast<int8_t>(p.fits); }));
    f.write_strings("/plans/refusal", column<std::string>(ranking, [](const P& p) { return p.refusal; }));
    const std::pair<const char*, double P::*> rates[] = {
        {"output_tokens_per_s", &P::output_tokens_per_s}, {"decode_tokens_per_s", &P::decode_tokens_per_s},
        {"prefill_tokens_per_s", &P::prefill_tokens_per_s}, {"ttft_s", &P::ttft_s}, {"itl_s", &P::itl_s}};
    for (const auto& [name, member] : rates)
      f.write(std::string("/plans/") + name, column<double>(ranking, [m = member](const P& p) { return p.*m; }));
    const std::pair<const char*, int64_t P::*> counts[] = {
        {"batch", &P::batch}, {"prefill_prompts", &P::prefill_prompts}, {"kv_tokens", &P::kv_tokens}};
    for (const auto& [name, member] : counts)
      f.write(std::string("/plans/") + name, column<int64_t>(ranking, [m = member](const P& p) { return p.*m; }));
    f.write("/plans/memory_per_rank", column<int64_t>(ranking, [](const P& p) { return p.memory.total(); }));
    f.write("/plans/weights_per_rank", column<int64_t>(ranking, [](const P& p) { return p.memory.weights; }));
    f.write_strings("/plans/batch_limit", column<std::string>(ranking, [](const P& p) { return p.batch_limit; }));
    f.write_strings("/plans/bottleneck", column<std::string>(ranking, [](const P& p) { return p.bottleneck; }));
    write_parts(f, "/plans/decode_parts", ranking, [](const P& p) -> const StepCost& { return p.decode; });
    write_parts(f, "/plans/prefill_parts", ranking, [](const P& p) -> const StepCost& { return p.prefill; });
    // The bound (predictor.hpp, assumption 14): the same columns, priced at the ceiling's figures.
    f.write("/plans/ceiling_output_tokens_per_s",
            column<double>(ranking, [](const P& p) { return p.ceiling.output_tokens_per_s; }));
    f.write("/plans/ceiling_decode_tokens_per_s",
            column<double>(ranking, [](const P& p) { return p.ceiling.decode_tokens_per_s; }));
    write_parts(f, "/plans/ceiling_decode_parts", ranking, [](const P& p) -> const StepCost& { return p.ceiling.decode; });
    write_parts(f, "/plans/ceiling_prefill_parts", ranking,
                [](const P& p) -> const StepCost& { return p.ceiling.prefill; });
    f.close();
  });
}

}  // namespace moetron
