// The benchmark programs' command-line options (tests/bench/bench_util.h): values are parsed strictly,
// and every bad argument is an error naming the option, what was received and what is allowed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bench/bench_util.h"

using orbit::bench::Options;

namespace {

struct Parsed {
  int threads = 2;
  int64_t batch = 64;
  std::string net = "resnet50", python = "/usr/bin/python3";
  bool quick = false;
};

Options options_for(Parsed& p) {
  Options o("prog");
  o.integer("--threads", p.threads, 1)
      .integer("--batch", p.batch, 1, 4096)
      .text("--net", p.net, {"resnet50", "resnet_small"})
      .text("--python", p.python, {}, "PATH")
      .flag("--quick", p.quick);
  return o;
}

void parse(Parsed& p, std::vector<std::string> args) {
  std::vector<char*> argv = {const_cast<char*>("prog")};
  for (std::string& a : args) argv.push_back(a.data());
  options_for(p).parse(static_cast<int>(argv.size()), argv.data());
}

// The message of the std::invalid_argument that parsing `args` throws ("" if none).
std::string error_of(std::vector<std::string> args) {
  Parsed p;
  try {
    parse(p, std::move(args));
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(BenchOptions, ParsesValuesAndSwitches) {
  Parsed p;
  parse(p, {"--threads", "3", "--net", "resnet_small", "--quick", "--batch", "4096", "--python", "/opt/py"});
  EXPECT_EQ(p.threads, 3);
  EXPECT_EQ(p.batch, 4096);
  EXPECT_EQ(p.net, "resnet_small");
  EXPECT_EQ(p.python, "/opt/py");
  EXPECT_TRUE(p.quick);
  Parsed defaults;
  parse(defaults, {});
  EXPECT_EQ(defaults.threads, 2);
  EXPECT_EQ(defaults.batch, 64);
  EXPECT_FALSE(defaults.quick);
}

TEST(BenchOptions, RejectsBadNumbersNamingOptionValueAndRange) {
  EXPECT_EQ(error_of({"--batch", "0"}), "option --batch: expected a whole number in [1, 4096], got 0");
  EXPECT_EQ(error_of({"--batch", "4097"}), "option --batch: expected a whole number in [1, 4096], got 4097");
  EXPECT_EQ(error_of({"--batch", "8x"}), "option --batch: expected a whole number in [1, 4096], got \"8x\"");
  EXPECT_EQ(error_of({"--threads", "abc"}), "option --threads: expected a whole number >= 1, got \"abc\"");
  EXPECT_EQ(error_of({"--threads", ""}), "option --threads: expected a whole number >= 1, got \"\"");
  EXPECT_EQ(error_of({"--threads", "1.5"}), "option --threads: expected a whole number >= 1, got \"1.5\"");
  EXPECT_EQ(error_of({"--threads", "99999999999999999999"}),
            "option --threads: expected a whole number >= 1, got \"99999999999999999999\"");
  // Beyond an int's range, for an int option.
  EXPECT_EQ(error_of({"--threads", "3000000000"}), "option --threads: expected a whole number >= 1, got 3000000000");
}

TEST(BenchOptions, RejectsUnknownOptionsMissingValuesAndWordsOutsideTheList) {
  EXPECT_EQ(error_of({"--what", "1"}), "unknown option \"--what\"");
  EXPECT_EQ(error_of({"--threads", "2", "--batch"}), "option --batch needs a value (N)");
  EXPECT_EQ(error_of({"--net", "vgg"}), "option --net: expected one of resnet50|resnet_small, got \"vgg\"");
  EXPECT_EQ(error_of({"--quick", "--python"}), "option --python needs a value (PATH)");
}

TEST(BenchOptions, UsageListsEveryOption) {
  Parsed p;
  EXPECT_EQ(options_for(p).usage(),
            "usage: prog [--threads N] [--batch N] [--net resnet50|resnet_small] [--python PATH] [--quick]");
}
