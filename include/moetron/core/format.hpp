// Numbers for people: byte counts with binary units ("1.50 GiB").
#pragma once
#include <string>

namespace moetron {

std::string human_bytes(double bytes);

}  // namespace moetron
