// Errors and check macros. Every failure the user can cause (bad file, bad option) is an
// moetron::Error with a message that names the file, field or option; the top of main prints it
// and ends every rank.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace moetron {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace moetron

// MOETRON_CHECK(cond, "text " << value): throws moetron::Error with the streamed message.
// Messages are for users: say what is wrong and where, not which line of ours noticed.
#define MOETRON_CHECK(cond, msg)                                  \
  do {                                                            \
    if (!(cond)) {                                                \
      std::ostringstream moetron_check_os_;                       \
      moetron_check_os_ << msg;                                   \
      throw ::moetron::Error(moetron_check_os_.str());            \
    }                                                             \
  } while (0)

#define MOETRON_FAIL(msg)                                         \
  do {                                                            \
    std::ostringstream moetron_check_os_;                         \
    moetron_check_os_ << msg;                                     \
    throw ::moetron::Error(moetron_check_os_.str());              \
  } while (0)

// Internal invariants (a bug in Moetron, not in the user's input): include file and line.
#define MOETRON_ASSERT(cond)                                                               \
  do {                                                                                     \
    if (!(cond)) ::moetron::detail::throw_error(__FILE__, __LINE__, "internal: " #cond);   \
  } while (0)
