#include "option_parsing.hpp"

#include <iostream>

#include "moetron/core/error.hpp"

namespace po = boost::program_options;

namespace moetron::apps {

bool parse_options(const std::string& command, const std::vector<std::string>& args,
                   const po::options_description& options, po::variables_map& vm) {
  try {
    po::store(po::command_line_parser(args).options(options).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: moetron " << command << " [options]\n\n" << options << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    MOETRON_FAIL(command << ": " << e.what() << " (see 'moetron " << command << " --help')");
  }
  return true;
}

uint64_t parse_byte_size(const std::string& text, const std::string& option) {
  size_t end = 0;
  unsigned long long number = 0;
  try {
    // stoull would read "-5" as 2^64 - 5.
    if (text.empty() || text[0] < '0' || text[0] > '9') throw std::invalid_argument(text);
    number = std::stoull(text, &end);
  } catch (const std::exception&) {
    MOETRON_FAIL(option << ": '" << text << "' is not a byte count (e.g. 5000000000, 5GB, 512MiB)");
  }
  std::string unit = text.substr(end);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  struct Unit {
    const char* name;
    uint64_t factor;
  };
  for (const Unit& u : {Unit{"", 1}, Unit{"k", 1000}, Unit{"K", 1000}, Unit{"M", 1000000}, Unit{"G", 1000000000},
                        Unit{"Ki", 1ull << 10}, Unit{"Mi", 1ull << 20}, Unit{"Gi", 1ull << 30}}) {
    if (unit != u.name) continue;
    MOETRON_CHECK(number > 0 && number <= UINT64_MAX / u.factor, option << ": '" << text << "' is out of range");
    return number * u.factor;
  }
  MOETRON_FAIL(option << ": '" << text << "' has an unknown unit (use B, kB, MB, GB, KiB, MiB or GiB)");
}

}  // namespace moetron::apps
