// SIGTERM and SIGINT while an output file is being written remove its temporary file and end
// the process with the signal's status; the guarded file is left alone otherwise.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "moetron/io/output_file.hpp"
#include "moetron/core/temp_files.hpp"
#include "moetron/model/safetensors.hpp"

namespace moetron {
namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

std::string fresh_dir() {
  char dir[] = "/tmp/moetron-temp-files.XXXXXX";
  EXPECT_NE(mkdtemp(dir), nullptr);
  return dir;
}

// In a child process: write_atomically(out), whose writer creates the temporary file and then
// receives `sig`. Returns the child's wait status; `tmp` gets the temporary file's name.
int signal_during_write(const std::string& out, int sig, std::string* tmp) {
  *tmp = out + ".tmp.";  // + the child's pid
  pid_t child = fork();
  if (child == 0) {
    try {
      write_atomically(out, [&](const std::string& path) {
        std::ofstream(path) << "half a results file";
        raise(sig);
      });
    } catch (...) {
    }
    _exit(0);  // only reached when the signal did not end the process
  }
  int status = 0;
  waitpid(child, &status, 0);
  *tmp += std::to_string(child);
  return status;
}

TEST(TempFiles, SigtermDuringWriteRemovesTheTemporaryFile) {
  for (int sig : {SIGTERM, SIGINT}) {
    const std::string dir = fresh_dir(), out = dir + "/out.h5";
    std::string tmp;
    const int status = signal_during_write(out, sig, &tmp);
    ASSERT_TRUE(WIFSIGNALED(status)) << "signal " << sig << ": the process did not end by the signal";
    EXPECT_EQ(WTERMSIG(status), sig);
    EXPECT_FALSE(exists(tmp)) << tmp << " left behind by signal " << sig;
    EXPECT_FALSE(exists(out));
    rmdir(dir.c_str());
  }
}

// model make's shards: a signal while a shard is written removes its temporary file too.
TEST(TempFiles, SigtermDuringShardWriteRemovesTheTemporaryFile) {
  const std::string dir = fresh_dir(), out = dir + "/model.safetensors";
  pid_t child = fork();
  if (child == 0) {
    TensorSource t{"w", DType::F32, {3 << 20}, nullptr, [](int64_t first, int64_t, void*) {
                     if (first > 0) raise(SIGTERM);  // after the first 8 MiB chunk reached the file
                   }};
    try {
      write_safetensors(out, {t});
    } catch (...) {
    }
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  EXPECT_FALSE(exists(out + ".tmp." + std::to_string(child)));
  EXPECT_FALSE(exists(out));
  rmdir(dir.c_str());
}

TEST(TempFiles, HandlersAreRestoredAfterTheWrite) {
  struct sigaction before {}, after {};
  sigaction(SIGTERM, nullptr, &before);
  {
    TempFileGuard guard("/nonexistent/x.tmp.1");
    struct sigaction during {};
    sigaction(SIGTERM, nullptr, &during);
    EXPECT_NE(during.sa_handler, before.sa_handler);
  }
  sigaction(SIGTERM, nullptr, &after);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
}

}  // namespace
}  // namespace moetron
