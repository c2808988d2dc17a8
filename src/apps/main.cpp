// moetron: entry point. Dispatches to a subcommand; any error on any rank is printed once by
// that rank and ends the whole job (MPI_Abort), so no peer is left blocked in a collective.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.hpp"
#include "moetron/core/error.hpp"
#include "moetron/version.hpp"

namespace {

void print_usage() {
  std::printf(
      "moetron %s (%s): Mixture-of-Experts inference engine\n\n"
      "usage: moetron <command> [options]\n\n"
      "commands:\n"
      "  run          generate for a prompts file, write results to HDF5\n"
      "  model make   write a deterministic random-weight checkpoint (HF layout)\n"
      "  model info   print a checkpoint's parsed config, parameters and bytes\n"
      "  plan         predict and rank every parallel plan for a cluster (nothing is run)\n"
      "  bench        measure this machine with a model's shapes; write a hardware profile\n"
      "  analyze      expert-load statistics of a results file (imbalance, hot experts, EP waits)\n"
      "  workload     write a prompts file of synthetic requests (lengths, arrival times)\n\n"
      "'moetron <command> --help' describes each command's options.\n",
      moetron::kVersion, moetron::kGitCommit);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage();
    return args.empty() ? 1 : 0;
  }
  if (args[0] == "--version") {
    std::printf("moetron %s (%s)\n", moetron::kVersion, moetron::kGitCommit);
    return 0;
  }
  std::string command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    if (command == "run") return moetron::apps::run_command(rest);
    if (command == "model") return moetron::apps::model_command(rest);
    if (command == "plan") return moetron::apps::plan_command(rest);
    if (command == "bench") return moetron::apps::bench_command(rest);
    if (command == "analyze") return moetron::apps::analyze_command(rest);
    if (command == "workload") return moetron::apps::workload_command(rest);
    std::fprintf(stderr, "moetron: unknown command '%s' (see 'moetron --help')\n", command.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moetron: error: %s\n", e.what());
    return 1;
  }
}
