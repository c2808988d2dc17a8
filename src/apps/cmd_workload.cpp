// moetron workload: writes a synthetic prompts file (lengths by kind, Poisson or closed-loop
// arrivals) for `moetron run`; analysis/workload_generator.hpp defines the distributions.
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "commands.hpp"
#include "moetron/analysis/workload_generator.hpp"
#include "moetron/core/atomic_file.hpp"
#include "moetron/core/error.hpp"
#include "moetron/io/prompts.hpp"
#include "option_parsing.hpp"

namespace po = boost::program_options;

namespace moetron::apps {
namespace {

const char* kWorkloadHelp =
    "moetron workload: write a prompts file (JSON Lines) of synthetic requests\n\n"
    "Lengths, uniform over each range (tokens):\n"
    "  short   prompt 8-64,      output 8-32\n"
    "  medium  prompt 128-512,   output 32-128\n"
    "  long    prompt 1024-2048, output 128-256\n"
    "  mixed   short, medium or long per request, with probabilities 0.5, 0.3, 0.2\n"
    "Prompt token ids are uniform over [0, vocab); every request has ignore_eos, so it produces\n"
    "exactly its max_new_tokens.\n"
    "Arrivals: --rate R, a Poisson process of R requests/s (arrival_s); --concurrency C, a closed\n"
    "loop of C clients: the first C requests arrive at the start and request i >= C arrives when\n"
    "request i - C finishes (\"after\"); neither: all arrive at the start. The same options give\n"
    "the same file on every machine.\n\nOptions";

std::vector<RequestSpec> as_prompts(const std::vector<GeneratedRequest>& generated) {
  std::vector<RequestSpec> specs;
  for (const GeneratedRequest& g : generated) {
    RequestSpec r;
    r.id = g.id;
    r.prompt_tokens = g.prompt_tokens;
    r.max_new_tokens = g.max_new_tokens;
    r.ignore_eos = true;
    r.arrival_s = g.arrival_s;
    r.after = g.after;
    specs.push_back(std::move(r));
  }
  return specs;
}

}  // namespace

int workload_command(const std::vector<std::string>& args) {
  std::string kind, out;
  WorkloadSpec spec;
  po::options_description options(kWorkloadHelp);
  options.add_options()
      ("help,h", "show this help")
      ("kind", po::value(&kind)->required(), "short, medium, long or mixed")
      ("requests", po::value(&spec.requests)->required(), "number of requests")
      ("rate", po::value(&spec.rate), "Poisson arrivals: requests per second (> 0)")
      ("concurrency", po::value(&spec.concurrency), "closed loop: requests kept in flight (>= 1)")
      ("vocab", po::value(&spec.vocab)->required(), "the model's vocabulary size (token ids are below it)")
      ("seed", po::value(&spec.seed)->default_value(0), "random seed")
      ("out", po::value(&out)->required(), "the prompts file to write (atomically)");
  po::variables_map vm;
  if (!parse_options("workload", args, options, vm)) return 0;
  spec.kind = parse_workload_kind(kind, "--kind");
  MOETRON_CHECK(!vm.count("rate") || spec.rate > 0, "--rate must be > 0 requests per second, got " << spec.rate);
  MOETRON_CHECK(!vm.count("concurrency") || spec.concurrency >= 1,
                "--concurrency must be at least 1, got " << spec.concurrency);
  const std::vector<RequestSpec> specs = as_prompts(generate_workload(spec));
  const std::string text = format_prompts(specs);
  AtomicFileWriter file(out);
  file.write(text.data(), text.size());
  file.commit();
  std::cout << "wrote " << out << ": " << specs.size() << " " << kind << " requests";
  if (spec.rate > 0) std::cout << ", Poisson arrivals at " << spec.rate << "/s over " << *specs.back().arrival_s << " s";
  if (spec.concurrency > 0) std::cout << ", closed loop of " << spec.concurrency;
  std::cout << "\n";
  return 0;
}

}  // namespace moetron::apps
