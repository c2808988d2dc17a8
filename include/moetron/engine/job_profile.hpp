// The hardware profile of the machines a job runs on, measured with a model's own shapes: compute
// on world rank 0 (the bootstrap rank), collectives over every rank of the world and of each node.
// `moetron bench` writes it to a file; `moetron run --plan auto` without --profile measures it
// first and predicts from it (and keeps it in its results, /profile).
#pragma once
#include <functional>
#include <string>

#include "moetron/bench/bench_grid.hpp"
#include "moetron/bench/profile.hpp"
#include "moetron/bench/timing.hpp"
#include "moetron/engine/device_setup.hpp"
#include "moetron/model/config.hpp"

namespace moetron {

struct JobProfileSettings {
  SizeChoice sizes;  // sizes.gpu is set from the backend
  TimingSettings timing;
  std::string command_line;                        // recorded in the profile's origin
  std::function<void(const std::string&)> report;  // a line per measured family and collective size (rank 0)
};

// Collective over MPI_COMM_WORLD: every rank calls it with its own binding. Each rank makes an
// Ops for the measurement and frees it before returning, so the run that follows has the device's
// memory back. Returns the whole profile, origin included, on world rank 0; an empty profile on
// the other ranks.
HardwareProfile measure_job_profile(const ModelConfig& config, const std::string& backend,
                                    const DeviceBinding& binding, const JobProfileSettings& settings);

}  // namespace moetron
