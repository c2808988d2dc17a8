// Helpers shared by the model-files unit tests (config, safetensors, random checkpoints).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "../common/fixtures_root.hpp"
#include "error_of.hpp"
#include "moetron/core/error.hpp"
#include "moetron/model/safetensors.hpp"

namespace moetron::testing {

inline std::string fixture_dir(const std::string& family) { return test::fixture_dir(family); }

// A copy of a tensor's bytes, for comparing tensors of two files.
inline std::vector<uint8_t> bytes_of(const TensorView& v) {
  auto p = static_cast<const uint8_t*>(v.data);
  return std::vector<uint8_t>(p, p + v.nbytes);
}

// Succeeds when `f` throws moetron::Error and its message contains every fragment.
template <class F>
::testing::AssertionResult throws_error(F&& f, std::initializer_list<std::string> fragments) {
  std::string msg;
  try {
    msg = test::error_of(f);  // "" when nothing was thrown
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-moetron exception: " << e.what();
  }
  if (msg.empty()) return ::testing::AssertionFailure() << "did not throw";
  for (const std::string& frag : fragments)
    if (msg.find(frag) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks '" << frag << "': " << msg;
  return ::testing::AssertionSuccess();
}

// A fresh directory under the system temp folder, removed with everything in it at scope end.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = std::filesystem::temp_directory_path() /
            ("moetron-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::filesystem::path path_;
};

}  // namespace moetron::testing
