// check_profile_matches (profile_file.hpp): a profile measured elsewhere would predict with the
// wrong shapes or hardware, silently; refuse it naming the field.
#include "moetron/bench/profile_file.hpp"

#include "moetron/core/error.hpp"

namespace moetron {

void check_profile_matches(const HardwareProfile& p, const ProfileUse& use, const std::string& path) {
  const std::string again = ": measure it again with moetron bench";
  if (use.model != nullptr) {
    for (const auto& [name, wanted] : profile_model_shapes(*use.model)) {
      auto it = p.model_shapes.find(name);
      MOETRON_CHECK(it != p.model_shapes.end(), path << ": the profile does not record the model's " << name
                                                     << " (/model)" << again);
      MOETRON_CHECK(it->second == wanted, path << ": measured for a model with " << name << " " << it->second
                                               << " (/model), this model has " << wanted << again);
    }
  }
  MOETRON_CHECK(use.world_size == 0 || p.origin.world_size == use.world_size,
                path << ": measured on " << p.origin.world_size << " ranks (world_size), this job has "
                     << use.world_size << again);
  MOETRON_CHECK(use.ranks_per_node == 0 || p.origin.ranks_per_node == use.ranks_per_node,
                path << ": measured with " << p.origin.ranks_per_node << " ranks per node (ranks_per_node), this job has "
                     << use.ranks_per_node << again);
  MOETRON_CHECK(use.backend.empty() || p.origin.backend == use.backend,
                path << ": measured on the " << p.origin.backend << " backend (backend), this job uses " << use.backend
                     << again);
  MOETRON_CHECK(use.kernels.empty() || p.origin.kernels.empty() || p.origin.kernels == use.kernels,
                path << ": measured with the kernels " << p.origin.kernels << " (kernels), this job runs "
                     << use.kernels << ": set the MOETRON_* variables as they were when it was measured, or"
                     << again.substr(1));
  MOETRON_CHECK(use.device.empty() || p.origin.device == use.device,
                path << ": measured on device '" << p.origin.device << "' (device), this job runs on '" << use.device
                     << "'" << again);
}

}  // namespace moetron
