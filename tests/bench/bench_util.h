// What the benchmark programs share: their command-line options, and running a peer (PyTorch) or a
// child measurement process and reading the JSON it prints.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace orbit::bench {

// The options of a benchmark program: "--name value" pairs and "--name" switches, declared with the
// variable each sets and, for numbers, the range allowed. parse() checks every argument and throws
// std::invalid_argument naming the option, what was received and what is allowed (an unknown option, a
// missing value, a number that is not a whole number or is out of range, a word not in the list);
// parse_or_exit() prints that and the usage and ends the program with status 2.
// (A value that is itself "--help" is taken as the help request.)
class Options {
 public:
  explicit Options(std::string program) : program_(std::move(program)) {}

  // A whole number in [min, max]; max defaults to the largest value the variable holds, and the
  // range is then shown as ">= min".
  template <class I>
  Options& integer(const std::string& name, I& v, int64_t min, int64_t max = std::numeric_limits<I>::max()) {
    const std::string range = max == static_cast<int64_t>(std::numeric_limits<I>::max())
                                  ? ">= " + std::to_string(min)
                                  : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    return add(name, "N", [name, &v, min, max, range](const std::string& s) {
      v = static_cast<I>(parse_integer(name, s, min, max, range));
    });
  }
  // A word (shown as `meta` in the usage); when `allowed` is not empty, one of those.
  Options& text(const std::string& name, std::string& v, std::vector<std::string> allowed = {},
                std::string meta = "WORD") {
    if (!allowed.empty()) {
      meta.clear();
      for (const std::string& a : allowed) meta += (meta.empty() ? "" : "|") + a;
    }
    return add(name, meta, [name, &v, allowed, meta](const std::string& s) {
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), s) == allowed.end())
        throw std::invalid_argument("option " + name + ": expected one of " + meta + ", got \"" + s + "\"");
      v = s;
    });
  }
  // A switch without a value.
  Options& flag(const std::string& name, bool& v) {
    specs_.push_back({name, "", nullptr, &v});
    return *this;
  }

  std::string usage() const {
    std::string u = "usage: " + program_;
    for (const Spec& s : specs_) u += " [" + s.name + (s.meta.empty() ? "" : " " + s.meta) + "]";
    return u;
  }

  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      const Spec* spec = nullptr;
      for (const Spec& s : specs_)
        if (s.name == a) spec = &s;
      if (!spec) throw std::invalid_argument("unknown option \"" + a + "\"");
      if (spec->flag) {
        *spec->flag = true;
        continue;
      }
      if (i + 1 >= argc) throw std::invalid_argument("option " + a + " needs a value (" + spec->meta + ")");
      spec->set(argv[++i]);
    }
  }

  // parse(), or the message and the usage on stderr and exit status 2; --help prints the usage and
  // exits with status 0.
  void parse_or_exit(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::printf("%s\n", usage().c_str());
        std::exit(0);
      }
    try {
      parse(argc, argv);
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "%s: %s\n%s\n", program_.c_str(), e.what(), usage().c_str());
      std::exit(2);
    }
  }

  // A whole number in [min, max], all of `s` (no trailing characters); `range` words the bounds for
  // the message.
  static int64_t parse_integer(const std::string& name, const std::string& s, int64_t min, int64_t max,
                               const std::string& range) {
    char* end = nullptr;
    errno = 0;
    const long long v = s.empty() ? 0 : std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE)
      throw std::invalid_argument("option " + name + ": expected a whole number " + range + ", got \"" + s + "\"");
    if (v < min || v > max)
      throw std::invalid_argument("option " + name + ": expected a whole number " + range + ", got " + s);
    return v;
  }

 private:
  struct Spec {
    std::string name, meta;
    std::function<void(const std::string&)> set;
    bool* flag;
  };
  Options& add(const std::string& name, const std::string& meta, std::function<void(const std::string&)> set) {
    specs_.push_back({name, meta, std::move(set), nullptr});
    return *this;
  }
  std::string program_;
  std::vector<Spec> specs_;
};

// Runs a command and parses the last line of its output as JSON.
inline nlohmann::json run_json(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return nullptr;
  std::string out, last;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  if (rc != 0) {
    std::fprintf(stderr, "failed (%d): %s\n%s", rc, cmd.c_str(), out.c_str());
    return nullptr;
  }
  // The last non-empty line.
  size_t end = out.size();
  while (end > 0 && out[end - 1] == '\n') --end;
  const size_t start = out.rfind('\n', end == 0 ? 0 : end - 1);
  last = out.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1));
  try {
    return nlohmann::json::parse(last);
  } catch (...) {
    std::fprintf(stderr, "unexpected output of %s:\n%s", cmd.c_str(), out.c_str());
    return nullptr;
  }
}

}  // namespace orbit::bench
