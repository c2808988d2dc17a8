#include "moetron/parallel/plan_agreement.hpp"

#include <limits>
#include <vector>

#include "moetron/core/error.hpp"

namespace moetron {

Plan agree_plan(Communicator& world, const std::string& text, const ModelConfig& config,
                const MemoryBudget& memory_here, int ranks_per_node, const AutoPlanChooser& choose_auto) {
  // The smallest known memory, as a maximum of negatives (unknown ranks send the lowest value).
  const int64_t here = memory_here.bytes_per_rank;
  std::vector<int64_t> least = {here > 0 ? -here : std::numeric_limits<int64_t>::min()};
  world.allreduce_host(least, /*max_instead_of_sum=*/true);
  MemoryBudget memory = memory_here;
  memory.bytes_per_rank = least[0] == std::numeric_limits<int64_t>::min() ? 0 : -least[0];

  // Rank 0's answer: {1, pp, tp, dp, ep, mb}, or {0, message bytes...}.
  std::vector<int64_t> answer;
  if (world.rank() == 0) {
    try {
      Plan p;
      if (choose_auto && is_auto_plan(text)) {
        p = choose_auto(memory);
        validate_plan(p, config, world.size(), memory);
      } else {
        p = resolve_plan(text, config, world.size(), memory, ranks_per_node);
      }
      answer = {1, p.pp, p.tp, p.dp, p.ep, p.mb};
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      answer = {0};
      answer.insert(answer.end(), msg.begin(), msg.end());
    }
  }
  world.broadcast_host(answer, 0);
  MOETRON_CHECK(!answer.empty(), "agree_plan: rank 0 sent no plan");
  if (answer[0] == 0) throw Error(std::string(answer.begin() + 1, answer.end()));
  MOETRON_CHECK(answer.size() == 6, "agree_plan: rank 0 sent " << answer.size() << " values for a plan");
  Plan p;
  p.pp = static_cast<int>(answer[1]);
  p.tp = static_cast<int>(answer[2]);
  p.dp = static_cast<int>(answer[3]);
  p.ep = static_cast<int>(answer[4]);
  p.mb = static_cast<int>(answer[5]);
  return p;
}

}  // namespace moetron
