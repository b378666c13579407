// Errors. User mistakes (bad shapes, bad files, bad configs) throw orbit::Error with a message that
// names the operation, what was received and what was expected. Broken internal invariants throw
// orbit::InternalError with file:line. Nothing in the engine aborts the host program.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace orbit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

class InternalError : public Error {
 public:
  explicit InternalError(const std::string& what) : Error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into one string.
template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

// "[2, 3, 4]"
std::string shape_str(const std::vector<int64_t>& shape);

// For an error about a name that is not one of `names` (a config key, a choice, a command):
// ` (did you mean "lambda"?)` naming the closest of them when it is a plausible misspelling of `got`
// (an edit distance, case aside, of at most a third of its length), else "".
std::string did_you_mean(const std::string& got, const std::vector<std::string>& names);

}  // namespace orbit

// Checks user-facing preconditions: ORBIT_CHECK(x.dim() == 4, "conv2d: input must be 4-D, got ", ...).
#define ORBIT_CHECK(cond, ...)                                  \
  do {                                                          \
    if (!(cond)) throw ::orbit::Error(::orbit::str_cat(__VA_ARGS__)); \
  } while (0)

// Checks internal invariants; a failure is a bug in Orbit, reported with its location.
#define ORBIT_ASSERT(cond, ...)                                                              \
  do {                                                                                       \
    if (!(cond))                                                                             \
      throw ::orbit::InternalError(::orbit::str_cat("internal error at ", __FILE__, ":",     \
                                                    __LINE__, ": ", #cond, " failed. ",      \
                                                    ##__VA_ARGS__));                         \
  } while (0)
