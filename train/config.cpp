#include "train/config.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/error.h"
#include "engine/file_io.h"

namespace orbit {

namespace {
const char* type_name(ConfigSchema::Type t) {
  switch (t) {
    case ConfigSchema::Type::Int: return "integer";
    case ConfigSchema::Type::Number: return "number";
    case ConfigSchema::Type::Bool: return "boolean";
    case ConfigSchema::Type::String: return "string";
    case ConfigSchema::Type::IntList: return "list of integers";
    case ConfigSchema::Type::NumberList: return "list of numbers";
    case ConfigSchema::Type::StringList: return "list of strings";
    case ConfigSchema::Type::Object: return "object";
  }
  return "?";
}

std::string range_str(const ConfigSchema::Field& f) {
  if (!f.choices.empty()) {
    std::string s = "one of {";
    for (size_t i = 0; i < f.choices.size(); ++i) s += (i ? ", " : "") + std::string("\"") + f.choices[i] + "\"";
    return s + "}";
  }
  if (f.type == ConfigSchema::Type::Int || f.type == ConfigSchema::Type::Number ||
      f.type == ConfigSchema::Type::IntList || f.type == ConfigSchema::Type::NumberList) {
    auto num = [](double v) {  // integral bounds print without a decimal point
      return v == static_cast<double>(static_cast<int64_t>(v)) ? std::to_string(static_cast<int64_t>(v))
                                                               : nlohmann::json(v).dump();
    };
    std::string lo = f.min <= -1e299 ? "-inf" : num(f.min);
    std::string hi = f.max >= 1e299 ? "inf" : num(f.max);
    return "in [" + lo + ", " + hi + "]";
  }
  return "";
}
}  // namespace

ConfigSchema& ConfigSchema::add(Field f) {
  fields_.push_back(std::move(f));
  return *this;
}
ConfigSchema& ConfigSchema::integer(const std::string& key, nlohmann::json def, double min, double max, std::string help) {
  return add({key, Type::Int, std::move(def), std::move(help), min, max, {}});
}
ConfigSchema& ConfigSchema::number(const std::string& key, nlohmann::json def, double min, double max, std::string help) {
  return add({key, Type::Number, std::move(def), std::move(help), min, max, {}});
}
ConfigSchema& ConfigSchema::boolean(const std::string& key, bool def, std::string help) {
  return add({key, Type::Bool, def, std::move(help), -1e300, 1e300, {}});
}
ConfigSchema& ConfigSchema::string(const std::string& key, nlohmann::json def, std::vector<std::string> choices, std::string help) {
  return add({key, Type::String, std::move(def), std::move(help), -1e300, 1e300, std::move(choices)});
}
ConfigSchema& ConfigSchema::int_list(const std::string& key, nlohmann::json def, double min, double max, std::string help) {
  return add({key, Type::IntList, std::move(def), std::move(help), min, max, {}});
}

ConfigSchema& ConfigSchema::number_list(const std::string& key, nlohmann::json def, double min, double max, std::string help) {
  return add({key, Type::NumberList, std::move(def), std::move(help), min, max, {}});
}
ConfigSchema& ConfigSchema::string_list(const std::string& key, nlohmann::json def, std::vector<std::string> choices,
                                        std::string help) {
  return add({key, Type::StringList, std::move(def), std::move(help), -1e300, 1e300, std::move(choices)});
}

nlohmann::json ConfigSchema::resolve(const nlohmann::json& user) const {
  ORBIT_CHECK(user.is_object(), name_, ": the config must be a JSON object, got ", user.type_name());
  for (auto& [k, v] : user.items()) {
    bool known = false;
    for (const auto& f : fields_) known |= f.key == k;
    if (!known) {
      std::string keys;
      std::vector<std::string> names;
      for (const auto& f : fields_) {
        keys += (keys.empty() ? "" : ", ") + f.key;
        names.push_back(f.key);
      }
      throw Error(str_cat(name_, ": unknown key \"", k, "\"", did_you_mean(k, names), "; allowed keys: ", keys));
    }
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& f : fields_) {
    if (!user.contains(f.key)) {
      ORBIT_CHECK(!f.default_value.is_null(), name_, ": missing required key \"", f.key, "\" (", type_name(f.type),
                  " ", range_str(f), ": ", f.help, ")");
      out[f.key] = f.default_value;
      continue;
    }
    const nlohmann::json& v = user.at(f.key);
    const char* article = f.type == Type::Int ? "an " : "a ";
    const std::string range = range_str(f);
    const std::string expect = str_cat("expected ", article, type_name(f.type), range.empty() ? "" : " " + range, ", got ", v.dump());
    auto in_range = [&](double x) { return x >= f.min && x <= f.max; };
    switch (f.type) {
      case Type::Int:
        ORBIT_CHECK(v.is_number_integer() && in_range(v.get<double>()), name_, ": key \"", f.key, "\": ", expect);
        break;
      case Type::Number:
        ORBIT_CHECK(v.is_number() && in_range(v.get<double>()), name_, ": key \"", f.key, "\": ", expect);
        break;
      case Type::Bool:
        ORBIT_CHECK(v.is_boolean(), name_, ": key \"", f.key, "\": ", expect);
        break;
      case Type::String: {
        ORBIT_CHECK(v.is_string(), name_, ": key \"", f.key, "\": ", expect);
        if (!f.choices.empty()) {
          bool ok = false;
          for (const auto& c : f.choices) ok |= c == v.get<std::string>();
          ORBIT_CHECK(ok, name_, ": key \"", f.key, "\": ", expect, did_you_mean(v.get<std::string>(), f.choices));
        }
        break;
      }
      case Type::IntList:
        ORBIT_CHECK(v.is_array(), name_, ": key \"", f.key, "\": ", expect);
        for (const auto& e : v)
          ORBIT_CHECK(e.is_number_integer() && in_range(e.get<double>()), name_, ": key \"", f.key, "\": ", expect);
        break;
      case Type::NumberList:
        ORBIT_CHECK(v.is_array(), name_, ": key \"", f.key, "\": ", expect);
        for (const auto& e : v)
          ORBIT_CHECK(e.is_number() && in_range(e.get<double>()), name_, ": key \"", f.key, "\": ", expect);
        break;
      case Type::StringList:
        ORBIT_CHECK(v.is_array(), name_, ": key \"", f.key, "\": ", expect);
        for (const auto& e : v) {
          ORBIT_CHECK(e.is_string(), name_, ": key \"", f.key, "\": ", expect);
          if (!f.choices.empty()) {
            bool ok = false;
            for (const auto& c : f.choices) ok |= c == e.get<std::string>();
            ORBIT_CHECK(ok, name_, ": key \"", f.key, "\": ", expect, ", ", e.dump(), " is not one of them",
                        did_you_mean(e.get<std::string>(), f.choices));
          }
        }
        break;
      case Type::Object:
        ORBIT_CHECK(v.is_object(), name_, ": key \"", f.key, "\": ", expect);
        break;
    }
    out[f.key] = v;
  }
  return out;
}

std::string ConfigSchema::describe() const {
  std::string s;
  for (const auto& f : fields_) {
    s += str_cat("  ", f.key, " (", type_name(f.type), f.default_value.is_null() ? ", required" : ", default " + f.default_value.dump(),
                 f.choices.empty() && f.type != Type::Int && f.type != Type::Number && f.type != Type::IntList && f.type != Type::NumberList ? "" : ", " + range_str(f), "): ", f.help, "\n");
  }
  return s;
}

void make_output_dir(const std::string& dir, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  ORBIT_CHECK(!ec && std::filesystem::is_directory(dir), what, ": cannot create the output folder \"", dir, "\" (",
              ec ? ec.message() : "a file of that name is in the way", ")");
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  ORBIT_CHECK(in.good(), "cannot open JSON file ", path, std::filesystem::exists(path) ? " (it exists but cannot be read)" : " (no such file)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(str_cat(path, ": invalid JSON: ", e.what()));
  }
}

void write_text_file(const std::string& path, const std::string& text) { write_file_atomically(path, text, "write"); }

void write_json_file(const std::string& path, const nlohmann::json& j) { write_text_file(path, j.dump(2) + "\n"); }

}  // namespace orbit
