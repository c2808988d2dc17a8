#include "moetron/predict/routing_file.hpp"

#include "moetron/core/error.hpp"
#include "moetron/io/results.hpp"

namespace moetron {

std::vector<std::vector<int64_t>> read_expert_loads(const std::string& path, const ModelConfig& c) {
  const std::string dataset = "/experts/tokens";
  const std::vector<int64_t> dims = read_dims(path, dataset);
  MOETRON_CHECK(dims.size() == 2 && dims[0] == c.num_layers && dims[1] == c.num_experts,
                path << ": " << dataset << " is not [" << c.num_layers << " layers, " << c.num_experts
                     << " experts]: the results are of another model");
  const std::vector<int64_t> flat = read_int64(path, dataset);
  std::vector<std::vector<int64_t>> loads;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (!c.layer_is_moe[static_cast<size_t>(l)]) continue;
    loads.emplace_back(flat.begin() + l * c.num_experts, flat.begin() + (l + 1) * c.num_experts);
  }
  return loads;
}

}  // namespace moetron
