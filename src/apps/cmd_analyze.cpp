// moetron analyze RESULTS.h5: the expert-load report of a results file, printed as a table and
// optionally written as HDF5 (--out). Plots: perf/expert_plots.py reads that file.
#include <iostream>

#include "commands.hpp"
#include "moetron/report/load_report.hpp"
#include "moetron/core/error.hpp"
#include "moetron/io/input_files.hpp"
#include "moetron/io/output_file.hpp"
#include "option_parsing.hpp"

namespace po = boost::program_options;

namespace moetron::apps {

int analyze_command(const std::vector<std::string>& args) {
  std::string results, out;
  int64_t top = 5, ep = 0;
  po::options_description options("moetron analyze RESULTS.h5 [options]");
  options.add_options()("help,h", "describe the options")
      ("results", po::value(&results)->required(), "the results file of a run (also the first argument)")
      ("out", po::value(&out), "write the report as HDF5 (atomically); plot it with perf/expert_plots.py")
      ("top", po::value(&top)->default_value(top), "hot and cold experts and co-activated pairs to list")
      ("ep", po::value(&ep)->default_value(ep),
       "expert-parallel sets to evaluate the load under (0: the run's plan)");
  po::positional_options_description positional;
  positional.add("results", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << options << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    MOETRON_FAIL("analyze: " << e.what() << " (see 'moetron analyze --help')");
  }
  MOETRON_CHECK(top >= 1, "--top must be at least 1, got " << top);
  MOETRON_CHECK(ep >= 0, "--ep must be >= 0 (0: the run's plan), got " << ep);
  if (!out.empty()) {
    check_output_writable(out);
    check_output_not_input(out, {results});
  }
  const LoadReport report = analyze_results(results, top, ep);
  std::cout << format_load_report(report);
  if (!out.empty()) {
    write_load_report(out, report);
    std::cout << "report written to " << out << "\n";
  }
  return 0;
}

}  // namespace moetron::apps
