// The subcommands of `moetron`. Each takes the arguments after its name and returns the exit
// code; errors are thrown as moetron::Error and reported by main.
#pragma once
#include <string>
#include <vector>

namespace moetron::apps {

int run_command(const std::vector<std::string>& args);         // moetron run
int model_command(const std::vector<std::string>& args);       // moetron model make|info
int plan_command(const std::vector<std::string>& args);        // moetron plan
int bench_command(const std::vector<std::string>& args);       // moetron bench
int analyze_command(const std::vector<std::string>& args);     // moetron analyze
int workload_command(const std::vector<std::string>& args);    // moetron workload

}  // namespace moetron::apps
