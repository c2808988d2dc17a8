// A HardwareProfile as an HDF5 file (layout: docs/profile-schema.md), and the check that a
// profile fits the run or prediction that wants to use it.
#pragma once
#include <string>

#include "moetron/bench/profile.hpp"
#include "moetron/io/hdf5.hpp"
#include "moetron/model/config.hpp"

namespace moetron {

// Written atomically (a temporary file, renamed): `path` is whole or untouched.
void save_profile(const std::string& path, const HardwareProfile& profile);
// A profile file, or a results file holding the profile its run measured (/profile). Errors
// name `path` and what is missing or malformed.
HardwareProfile load_profile(const std::string& path);
// The profile's attributes, /model and /tables under `root` of an open file: "/" for a profile
// file, a group (made here) such as "/profile" inside another file.
void write_profile(h5::File& file, const std::string& root, const HardwareProfile& profile);
HardwareProfile read_profile(const h5::File& file, const std::string& root);

// What a profile is about to be used for. Fields left empty (0, "") are not checked: `moetron
// plan` predicts for a cluster that is not at hand, so only the model is checked there.
struct ProfileUse {
  const ModelConfig* model = nullptr;
  int world_size = 0, ranks_per_node = 0;
  std::string device, backend;
  std::string kernels;  // Ops::kernel_settings of the job; checked where both sides record one
};

// Throws Error naming `path`, the field, the profile's value and the expected one, e.g.
// "p.h5: measured for hidden_size 64 (/model), this model has 2048: run moetron bench for it".
void check_profile_matches(const HardwareProfile& profile, const ProfileUse& use, const std::string& path);

}  // namespace moetron
