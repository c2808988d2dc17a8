// Where the HF fixtures (tests/fixtures: one folder per family) are, found when the tests run, so
// test binaries copied to another machine (a GPU machine without the build dependencies) find
// them too. In order: the --fixtures DIR option (set_fixtures_option), the MOETRON_FIXTURES
// environment variable, ./tests/fixtures under the working directory, and the source tree the
// binary was built from (MOETRON_SOURCE_DIR, when that folder still exists).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace moetron::test {

// The --fixtures option's value; empty when not given.
inline std::string& fixtures_option() {
  static std::string dir;
  return dir;
}

// Removes `--fixtures DIR` or `--fixtures=DIR` from argv (before GoogleTest sees the arguments)
// and remembers DIR. Throws when the option has no value.
inline void take_fixtures_option(int& argc, char** argv) {
  const std::string flag = "--fixtures";
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == flag) {
      if (i + 1 >= argc) throw std::runtime_error("--fixtures needs a folder: --fixtures DIR");
      fixtures_option() = argv[++i];
    } else if (arg.rfind(flag + "=", 0) == 0) {
      fixtures_option() = arg.substr(flag.size() + 1);
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  argv[argc] = nullptr;
}

// A fixtures folder is one that holds the olmoe fixture's config.json.
inline bool looks_like_fixtures(const std::string& dir) {
  return std::filesystem::is_regular_file(std::filesystem::path(dir) / "olmoe" / "config.json");
}

// The fixtures folder, by the order above, with `built_from` as the last place to look. A folder
// named by the option or the variable must be a fixtures folder (no silent fallback); throws,
// naming every place tried, when none is.
inline std::string find_fixtures_root(const std::string& built_from) {
  if (!fixtures_option().empty()) {
    if (!looks_like_fixtures(fixtures_option()))
      throw std::runtime_error("--fixtures " + fixtures_option() +
                               ": not a fixtures folder (no olmoe/config.json in it)");
    return fixtures_option();
  }
  if (const char* env = std::getenv("MOETRON_FIXTURES"); env && *env) {
    if (!looks_like_fixtures(env))
      throw std::runtime_error(std::string("MOETRON_FIXTURES=") + env +
                               ": not a fixtures folder (no olmoe/config.json in it)");
    return env;
  }
  const std::string here = (std::filesystem::current_path() / "tests" / "fixtures").string();
  if (looks_like_fixtures(here)) return here;
  if (!built_from.empty() && looks_like_fixtures(built_from)) return built_from;
  throw std::runtime_error(
      "no HF fixtures found: tried the --fixtures option (not given), MOETRON_FIXTURES (unset), " +
      here + " and " + (built_from.empty() ? "no source tree" : built_from) +
      "; pass --fixtures DIR or set MOETRON_FIXTURES to a checkout's tests/fixtures");
}

inline std::string fixtures_root() {
#ifdef MOETRON_SOURCE_DIR
  return find_fixtures_root(std::string(MOETRON_SOURCE_DIR) + "/tests/fixtures");
#else
  return find_fixtures_root("");
#endif
}

inline std::string fixture_dir(const std::string& family) { return fixtures_root() + "/" + family; }

}  // namespace moetron::test
