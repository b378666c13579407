// Validated JSON configuration. A ConfigSchema lists every allowed key with its type, range or
// choices and default; resolve() checks a user's config before any work starts (unknown key, wrong
// type, value out of range -> orbit::Error naming the key and what is allowed) and returns the
// resolved config with defaults filled in, which runs save next to their results.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace orbit {

class ConfigSchema {
 public:
  enum class Type { Int, Number, Bool, String, IntList, NumberList, StringList, Object };

  struct Field {
    std::string key;
    Type type;
    nlohmann::json default_value;  // null: required
    std::string help;
    double min = -1e300, max = 1e300;     // Int / Number / IntList / NumberList elements
    std::vector<std::string> choices;     // String / StringList elements
  };

  explicit ConfigSchema(std::string name) : name_(std::move(name)) {}
  ConfigSchema& add(Field f);
  ConfigSchema& integer(const std::string& key, nlohmann::json def, double min, double max, std::string help);
  ConfigSchema& number(const std::string& key, nlohmann::json def, double min, double max, std::string help);
  ConfigSchema& boolean(const std::string& key, bool def, std::string help);
  ConfigSchema& string(const std::string& key, nlohmann::json def, std::vector<std::string> choices, std::string help);
  ConfigSchema& int_list(const std::string& key, nlohmann::json def, double min, double max, std::string help);
  ConfigSchema& number_list(const std::string& key, nlohmann::json def, double min, double max, std::string help);
  // A list of strings; with choices, every element must be one of them.
  ConfigSchema& string_list(const std::string& key, nlohmann::json def, std::vector<std::string> choices, std::string help);

  // Validates `user` (an object) and returns it with defaults filled in.
  nlohmann::json resolve(const nlohmann::json& user) const;
  // One line per key: name, type, default, range or choices, help.
  std::string describe() const;
  const std::vector<Field>& fields() const { return fields_; }

 private:
  std::string name_;
  std::vector<Field> fields_;
};

// Creates the folder `dir` (and its parents) where `what` writes its output; an error naming `what`, the
// folder and the reason when it cannot (a file in the way, no permission).
void make_output_dir(const std::string& dir, const std::string& what);
// Reads a JSON file, naming the file and the parse error position on failure.
nlohmann::json read_json_file(const std::string& path);
// Writes text atomically (temporary file, then rename), so a crash never leaves half a file.
void write_text_file(const std::string& path, const std::string& text);
// write_text_file of the JSON, indented.
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace orbit
