// Where the test binaries find the HF fixtures when they run (tests/common/fixtures_root.hpp):
// the --fixtures option, MOETRON_FIXTURES, ./tests/fixtures, then the source tree; a clear error
// when none holds them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "../common/fixtures_root.hpp"

namespace fs = std::filesystem;
using moetron::test::find_fixtures_root;
using moetron::test::fixtures_option;

namespace {

const std::string kSourceFixtures = std::string(MOETRON_SOURCE_DIR) + "/tests/fixtures";

std::string message_of(const std::string& built_from) {
  try {
    find_fixtures_root(built_from);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// Runs each test from an empty temp folder with no option and no variable, and puts back the
// working directory and MOETRON_FIXTURES afterwards.
class FixturesRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    old_cwd_ = fs::current_path();
    if (const char* env = std::getenv("MOETRON_FIXTURES")) old_env_ = env, had_env_ = true;
    unsetenv("MOETRON_FIXTURES");
    fixtures_option().clear();
    dir_ = fs::temp_directory_path() / ("moetron-fixtures-root-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    fs::current_path(dir_);
  }
  void TearDown() override {
    fs::current_path(old_cwd_);
    fs::remove_all(dir_);
    fixtures_option().clear();
    if (had_env_) {
      setenv("MOETRON_FIXTURES", old_env_.c_str(), 1);
    } else {
      unsetenv("MOETRON_FIXTURES");
    }
  }
  fs::path old_cwd_, dir_;
  std::string old_env_;
  bool had_env_ = false;
};

}  // namespace

TEST_F(FixturesRoot, NoneFoundNamesEveryPlaceTried) {
  const std::string msg = message_of("/nonexistent/tests/fixtures");
  EXPECT_NE(msg.find("no HF fixtures found"), std::string::npos) << msg;
  EXPECT_NE(msg.find((dir_ / "tests" / "fixtures").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("/nonexistent/tests/fixtures"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--fixtures DIR"), std::string::npos) << msg;
  EXPECT_NE(msg.find("MOETRON_FIXTURES"), std::string::npos) << msg;
}

TEST_F(FixturesRoot, SourceTreeIsTheLastResort) {
  EXPECT_EQ(find_fixtures_root(kSourceFixtures), kSourceFixtures);
}

TEST_F(FixturesRoot, WorkingDirectoryComesBeforeTheSourceTree) {
  fs::create_directories(dir_ / "tests");
  fs::create_directory_symlink(kSourceFixtures, dir_ / "tests" / "fixtures");
  EXPECT_EQ(find_fixtures_root("/nonexistent"), (dir_ / "tests" / "fixtures").string());
}

TEST_F(FixturesRoot, EnvironmentVariableWinsAndMustHoldFixtures) {
  setenv("MOETRON_FIXTURES", kSourceFixtures.c_str(), 1);
  EXPECT_EQ(find_fixtures_root("/nonexistent"), kSourceFixtures);
  setenv("MOETRON_FIXTURES", dir_.c_str(), 1);
  const std::string msg = message_of(kSourceFixtures);  // no fallback to the source tree
  EXPECT_NE(msg.find("MOETRON_FIXTURES=" + dir_.string()), std::string::npos) << msg;
}

TEST_F(FixturesRoot, OptionIsTakenOutOfArgvAndWinsOverTheVariable) {
  setenv("MOETRON_FIXTURES", dir_.c_str(), 1);  // not a fixtures folder: must not be consulted
  std::string a0 = "prog", a1 = "--gtest_filter=X", a2 = "--fixtures", a3 = kSourceFixtures;
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), nullptr};
  int argc = 4;
  moetron::test::take_fixtures_option(argc, argv);
  ASSERT_EQ(argc, 2);
  EXPECT_EQ(std::string(argv[1]), "--gtest_filter=X");
  EXPECT_EQ(argv[2], nullptr);
  EXPECT_EQ(find_fixtures_root("/nonexistent"), kSourceFixtures);

  std::string b1 = "--fixtures=" + dir_.string();
  char* argv2[] = {a0.data(), b1.data(), nullptr};
  argc = 2;
  moetron::test::take_fixtures_option(argc, argv2);
  EXPECT_EQ(argc, 1);
  const std::string msg = message_of(kSourceFixtures);
  EXPECT_NE(msg.find("--fixtures " + dir_.string()), std::string::npos) << msg;
}

TEST_F(FixturesRoot, OptionWithoutValueIsAnError) {
  std::string a0 = "prog", a1 = "--fixtures";
  char* argv[] = {a0.data(), a1.data(), nullptr};
  int argc = 2;
  EXPECT_THROW(moetron::test::take_fixtures_option(argc, argv), std::runtime_error);
}
