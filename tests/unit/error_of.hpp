// Test helper: the message of the moetron::Error a piece of code throws, so a test can check
// that the message names the file, line and field.
#pragma once
#include <string>

#include "moetron/core/error.hpp"

namespace moetron::test {

// The Error message `body` raises, or "" when it does not throw.
template <class F>
std::string error_of(F body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace moetron::test
