// Numbers for people: byte counts with binary units ("1.50 GiB").
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace moetron {

std::string human_bytes(double bytes);

// A decimal integer written with digits only (no sign, space or prefix: a flag's "-1" is not
// read as 2^64 - 1), or nothing when the text is empty, has another character or exceeds
// 2^64 - 1. Callers name the option in their own message.
std::optional<uint64_t> parse_decimal(const std::string& text);

}  // namespace moetron
