// Shared by the fuzz targets: a parser may refuse its input only with moetron::Error (a clear
// message); any other exception, a crash, a leak or a hang is a finding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "moetron/core/error.hpp"

namespace moetron::fuzz {

template <class F>
void expect_only_errors(F body) {
  try {
    body();
  } catch (const Error&) {
    // refused with a message: fine
  }
}

inline std::string text_of(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace moetron::fuzz
