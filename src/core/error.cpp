#include "moetron/core/error.hpp"

namespace moetron::detail {
void throw_error(const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << msg << " (" << file << ":" << line << ")";
  throw Error(os.str());
}
}  // namespace moetron::detail
