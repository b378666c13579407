// What the benchmark programs share: running a peer (PyTorch) or a child measurement process and
// reading the JSON it prints.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace orbit::bench {

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
