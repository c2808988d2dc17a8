// The one atomic-file writer (moetron/core/atomic_file.hpp): the file appears whole under its
// name, or the old one stays and no temp file is left behind.
#include "moetron/core/atomic_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "error_of.hpp"

namespace fs = std::filesystem;
using namespace moetron;
using moetron::test::error_of;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class AtomicFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("moetron-atomic-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Files in the folder other than `keep`: a left-over temp file shows up here.
  int others(const std::string& keep) const {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir_)) n += e.path().filename() != keep;
    return n;
  }
  fs::path dir_;
};

}  // namespace

TEST_F(AtomicFile, WriterPublishesOnCommitOnly) {
  const std::string p = path("out.bin");
  {
    AtomicFileWriter w(p);
    w.write("abc", 3);
    w.write("def", 3);
    EXPECT_FALSE(fs::exists(p));  // nothing under the name before commit
    EXPECT_TRUE(fs::exists(w.temp_path()));
    w.commit();
  }
  EXPECT_EQ(read_all(p), "abcdef");
  EXPECT_EQ(others("out.bin"), 0);
}

TEST_F(AtomicFile, WriterWithoutCommitLeavesTheOldFileAndNoTemp) {
  const std::string p = path("out.bin");
  std::ofstream(p) << "old";
  {
    AtomicFileWriter w(p);
    w.write("new", 3);
  }
  EXPECT_EQ(read_all(p), "old");
  EXPECT_EQ(others("out.bin"), 0);
}

TEST_F(AtomicFile, WriterInAMissingFolderNamesTheFile) {
  const std::string msg = error_of([&] { AtomicFileWriter w(path("missing/out.bin")); });
  EXPECT_NE(msg.find("missing/out.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot create"), std::string::npos) << msg;
}

TEST_F(AtomicFile, WriteAtomicallyReplacesTheFile) {
  const std::string p = path("r.h5");
  std::ofstream(p) << "old";
  write_atomically(p, [](const std::string& tmp) {
    EXPECT_NE(tmp.find(".tmp."), std::string::npos);
    std::ofstream(tmp) << "new";
  });
  EXPECT_EQ(read_all(p), "new");
  EXPECT_EQ(others("r.h5"), 0);
}

TEST_F(AtomicFile, WriteAtomicallyFailureKeepsTheOldFileAndNamesIt) {
  const std::string p = path("r.h5");
  std::ofstream(p) << "old";
  const std::string msg = error_of([&] {
    write_atomically(p, [](const std::string& tmp) {
      std::ofstream(tmp) << "half";
      throw std::runtime_error("disk on fire");
    });
  });
  EXPECT_NE(msg.find("cannot write " + p), std::string::npos) << msg;
  EXPECT_NE(msg.find("disk on fire"), std::string::npos) << msg;
  EXPECT_EQ(read_all(p), "old");
  EXPECT_EQ(others("r.h5"), 0);
}

TEST_F(AtomicFile, WriteAtomicallyFailsWhenNothingWasWritten) {
  const std::string p = path("r.h5");
  const std::string msg = error_of([&] { write_atomically(p, [](const std::string&) {}); });
  EXPECT_NE(msg.find("cannot write " + p), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(p));
}
