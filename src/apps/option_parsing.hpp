// What every subcommand's option parsing shares: Boost.Program_options with errors that name the
// command and option, and byte counts with units.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace moetron::apps {

// Parses `args` against `options`; returns false (after printing help) when --help was given.
// Unknown options, missing values and missing required options throw Error naming them.
bool parse_options(const std::string& command, const std::vector<std::string>& args,
                   const boost::program_options::options_description& options,
                   boost::program_options::variables_map& vm);

// "5000000000", "5GB", "512MiB", "100k": a positive byte count (decimal k/M/G or binary
// Ki/Mi/Gi). Errors name `option`.
uint64_t parse_byte_size(const std::string& text, const std::string& option);

}  // namespace moetron::apps
