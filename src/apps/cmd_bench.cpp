// `moetron bench`: measure this machine with the model's own shapes (compute on world rank 0,
// collectives over every rank of the job and of each node) and write the HardwareProfile that
// `moetron plan --profile` predicts from. Runs under mpirun like `moetron run`.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

#include <boost/program_options.hpp>

#include "commands.hpp"
#include "option_parsing.hpp"
#include "moetron/bench/profile_file.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#include "moetron/engine/device_setup.hpp"
#include "moetron/engine/job_profile.hpp"
#include "moetron/io/input_files.hpp"
#include "moetron/io/output_file.hpp"
#include "moetron/model/config.hpp"

namespace po = boost::program_options;

namespace moetron::apps {
namespace {

struct BenchOptions {
  std::string model, out, backend = "auto", max_bytes, log_level = "info";
  bool quick = false;
  int64_t max_tokens = 0;
  int reps = 5, warmup = 2;
};

po::options_description bench_options(BenchOptions& o) {
  po::options_description d("moetron bench: measure this machine with a model's shapes; write a hardware profile");
  d.add_options()
      ("help,h", "describe the options")
      ("model", po::value(&o.model)->required(), "checkpoint directory (only its config.json is read)")
      ("out", po::value(&o.out)->required(), "the profile to write (HDF5, atomically; docs/profile-schema.md)")
      ("backend", po::value(&o.backend)->default_value(o.backend), "cpu, cuda or auto (cuda where a GPU is visible)")
      ("quick", po::bool_switch(&o.quick), "fewer sizes: a quick look, not for accurate predictions")
      ("max-tokens", po::value(&o.max_tokens)->default_value(o.max_tokens),
       "largest token count of the GEMM and kernel sweeps (0: 16384 on GPUs, 1024 on the CPU, 256 with --quick)")
      ("max-bytes", po::value(&o.max_bytes),
       "largest collective (e.g. 64MiB; default 256MiB on GPUs, 16MiB on the CPU, with --quick or where ranks share a GPU)")
      ("reps", po::value(&o.reps)->default_value(o.reps), "timed batches per point (median, p10, p90)")
      ("warmup", po::value(&o.warmup)->default_value(o.warmup), "batches run and discarded before timing")
      ("log-level", po::value(&o.log_level)->default_value(o.log_level), "error, warn, info or debug");
  return d;
}

void check_bench_options(const BenchOptions& o) {
  MOETRON_CHECK(o.backend == "cpu" || o.backend == "cuda" || o.backend == "auto",
                "--backend must be cpu, cuda or auto, got '" << o.backend << "'");
  MOETRON_CHECK(o.reps >= 1 && o.reps <= 1000, "--reps must be in [1, 1000], got " << o.reps);
  MOETRON_CHECK(o.warmup >= 0 && o.warmup <= 100, "--warmup must be in [0, 100], got " << o.warmup);
  MOETRON_CHECK(o.max_tokens >= 0 && o.max_tokens <= (1 << 20), "--max-tokens must be in [0, 2^20], got " << o.max_tokens);
}

int bench(const BenchOptions& o, const std::string& command_line, int rank, int world_size) {
  const std::string config_path = (std::filesystem::path(o.model) / "config.json").string();
  const ModelConfig config = load_model_config(config_path);
  if (rank == 0) {
    check_output_writable(o.out);
    check_output_not_input(o.out, {config_path});
  }
  const std::string backend = resolve_backend(o.backend);
  const DeviceBinding binding = bind_rank_devices(MPI_COMM_WORLD, backend);
  JobProfileSettings settings;
  settings.sizes.quick = o.quick;
  settings.sizes.max_tokens = o.max_tokens;
  if (!o.max_bytes.empty()) settings.sizes.max_bytes = static_cast<int64_t>(parse_byte_size(o.max_bytes, "--max-bytes"));
  settings.timing.reps = o.reps;
  settings.timing.warmup = o.warmup;
  settings.command_line = command_line;
  settings.report = [](const std::string& line) { LOG_INFO("bench " << line); };

  const auto start = std::chrono::steady_clock::now();
  const HardwareProfile profile = measure_job_profile(config, backend, binding, settings);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (rank != 0) return 0;
  save_profile(o.out, profile);
  LOG_INFO("bench: " << profile.origin.device << " (" << backend << "), " << world_size << " rank(s) on "
                     << profile.origin.nodes << " node(s): measured in " << seconds << " s; profile in " << o.out);
  return 0;
}

}  // namespace

int bench_command(const std::vector<std::string>& args) {
  BenchOptions o;
  const po::options_description options = bench_options(o);
  po::variables_map vm;
  if (!parse_options("bench", args, options, vm)) return 0;
  check_bench_options(o);
  set_log_level(parse_log_level(o.log_level));
  std::string command_line = "moetron bench";
  for (const std::string& a : args) command_line += " " + a;

  MpiRuntime mpi(nullptr, nullptr);
  try {
    return bench(o, command_line, mpi.world_rank(), mpi.world_size());
  } catch (const std::exception& e) {
    // One rank's failure must end every rank at once, never leave peers in a collective.
    if (mpi.world_size() > 1) abort_job(e.what());
    throw;
  }
}

}  // namespace moetron::apps
