#pragma once
/// @file config.hpp
/// @brief Config: nested settings read and written by dotted paths (`"model.hidden"`), JSON in
/// and out (nlohmann/json).

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/exact_number.hpp>
#include <batchpipe/detail/json_excerpt.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace batchpipe {

/// @brief Nested settings: a JSON object whose values are read and written by dotted paths.
///
/// A path names keys from the top, separated by dots (`"model.hidden"`); a number picks an
/// element of an array (`"layers.0"`); the empty path is the whole config. Reading checks the
/// type: an integer setting is never read from `2.5`, a string never from a number, and every
/// error names the config's source, the path and both types.
///
/// @code
/// bp::Config config = bp::Config::load("run.json");
/// const auto hidden = config.get<int64_t>("model.hidden");
/// const double lr = config.get_or("optimizer.lr", 1e-3);
/// config.set("model.hidden", 512).save("run-512.json");
/// @endcode
class Config {
 public:
  /// The JSON type the settings are held in.
  using json = nlohmann::json;

  /// An empty config: `{}`.
  Config() : json_(json::object()) {}
  /// How deeply a config's values may nest (`{"a": [1]}` nests 2). Deeper is an Error: copying,
  /// comparing or writing such a value recurses once per level and would overflow the stack.
  static constexpr std::size_t max_nesting = 128;

  /// A config holding `value`, which must be a JSON object nesting at most max_nesting levels;
  /// `source` names it in errors.
  explicit Config(json value, std::string source = "config")
      : json_(std::move(value)), source_(std::move(source)) {
    check_nesting(json_, 0, "");
    if (!json_.is_object()) throw Error(source_ + ": a config is a JSON object, not " + describe(json_));
  }

  /// Parses JSON text; an error names `source` and the byte where parsing failed.
  static Config parse(std::string_view text, std::string source = "config") {
    json value;
    try {
      value = json::parse(text);
    } catch (const json::parse_error& e) {
      throw Error(source + ": not valid JSON at byte " + std::to_string(e.byte) + ": " + parse_message(e));
    } catch (const json::exception& e) {  // parsed, but not representable: a number out of range
      throw Error(source + ": not valid JSON: " + parse_message(e));
    }
    return Config(std::move(value), std::move(source));
  }

  /// Reads a JSON file; errors name the file.
  static Config load(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw FileError(file, "cannot open the config file");
    std::ostringstream text;
    text << in.rdbuf();
    return parse(text.str(), file.string());
  }

  /// The config as JSON text (`indent` < 0: on one line).
  std::string dump(int indent = 2) const { return json_.dump(indent); }

  /// Writes the config as JSON to `file`.
  const Config& save(const std::filesystem::path& file, int indent = 2) const {
    std::ofstream out(file, std::ios::binary);
    if (!out) throw FileError(file, "cannot write the config file");
    out << dump(indent) << '\n';
    if (!out) throw FileError(file, "cannot write the config file");
    return *this;
  }

  /// True when `path` names a value.
  bool contains(std::string_view path) const { return find(path) != nullptr; }

  /// The value at `path` as T; an Error when it is missing or of another type.
  template <class T>
  T get(std::string_view path) const {
    const json* value = find(path);
    if (!value) throw Error(source_ + ": no setting '" + std::string(path) + "'" + missing_hint(path));
    return convert<T>(*value, path);
  }

  /// The value at `path` as T, or `fallback` when there is none (a value of another type is
  /// still an Error).
  template <class T>
  T get_or(std::string_view path, T fallback) const {
    const json* value = find(path);
    return value ? convert<T>(*value, path) : std::move(fallback);
  }

  /// A string setting, or `fallback`.
  std::string get_or(std::string_view path, const char* fallback) const {
    return get_or<std::string>(path, fallback);
  }

  /// The object at `path` as a Config of its own (for a part such as `"model"`).
  Config at(std::string_view path) const {
    const json* value = find(path);
    if (!value) throw Error(source_ + ": no setting '" + std::string(path) + "'" + missing_hint(path));
    if (!value->is_object())
      throw Error(source_ + ": '" + std::string(path) + "' is " + describe(*value) + ", not an object");
    return Config(*value, source_ + " at '" + std::string(path) + "'");
  }

  /// Sets the value at `path`, making the objects on the way; an Error when the way passes
  /// through a value that is not an object.
  Config& set(std::string_view path, json value) {
    if (path.empty()) {
      *this = Config(std::move(value), source_);
      return *this;
    }
    check_nesting(value, split(path).size(), path);
    json* node = &json_;
    std::string walked;
    for (const std::string& key : split(path)) {
      if (!node->is_object() && !node->is_null()) {  // null: a key made on the way
        throw Error(source_ + ": cannot set '" + std::string(path) + "': '" + walked + "' is " +
                    describe(*node) + ", not an object");
      }
      node = &(*node)[key];
      walked += (walked.empty() ? "" : ".") + key;
    }
    *node = std::move(value);
    return *this;
  }

  /// This config with `overrides` laid over it: objects merge key by key, anything else is
  /// replaced (a grid's point over a base config, say).
  Config merged(const Config& overrides) const {
    Config result = *this;
    merge_into(result.json_, overrides.json_);
    return result;
  }

  /// The JSON value of the whole config.
  const json& to_json() const noexcept { return json_; }
  /// What the config was read from, as errors name it.
  const std::string& source() const noexcept { return source_; }

  /// Equal settings (sources are not compared).
  friend bool operator==(const Config& a, const Config& b) { return a.json_ == b.json_; }

 private:
  static std::vector<std::string> split(std::string_view path) {
    std::vector<std::string> keys;
    std::size_t start = 0;
    while (true) {
      const std::size_t dot = path.find('.', start);
      keys.emplace_back(
          path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
      if (dot == std::string_view::npos) return keys;
      start = dot + 1;
    }
  }

  static bool is_array_index(const std::string& key) {
    return !key.empty() && key.size() < 19 && key.find_first_not_of("0123456789") == std::string::npos;
  }

  const json* find(std::string_view path) const {
    if (path.empty()) return &json_;
    const json* node = &json_;
    for (const std::string& key : split(path)) {
      if (node->is_object()) {
        const auto found = node->find(key);
        if (found == node->end()) return nullptr;
        node = &*found;
      } else if (node->is_array() && is_array_index(key) && std::stoull(key) < node->size()) {
        node = &(*node)[std::stoull(key)];
      } else {
        return nullptr;
      }
    }
    return node;
  }

  // Where a missing path leaves off, and what is there: "(at 'model': hidden, lr)".
  std::string missing_hint(std::string_view path) const {
    std::string walked;
    const json* node = &json_;
    for (const std::string& key : split(path)) {
      const std::string next = walked.empty() ? key : walked + "." + key;
      const json* child = find(next);
      if (!child) break;
      node = child;
      walked = next;
    }
    const std::string where = walked.empty() ? "the top" : "'" + walked + "'";
    if (!node->is_object()) return " (" + where + " is " + describe(*node) + ")";
    std::string keys;
    for (const auto& item : node->items()) keys += (keys.empty() ? "" : ", ") + item.key();
    return " (keys at " + where + ": " + (keys.empty() ? "none" : keys) + ")";
  }

  template <class T>
  struct is_vector : std::false_type {};
  template <class E, class A>
  struct is_vector<std::vector<E, A>> : std::true_type {};

  static std::string describe(const json& value) {
    return kind(value) + " (" + detail::json_excerpt(value, 40) + ")";
  }

  // `value`, to be placed `depth` levels down (at `path`), within max_nesting.
  void check_nesting(const json& value, std::size_t depth, std::string_view path) const {
    if (depth + detail::json_nesting(value, max_nesting) > max_nesting) {
      throw Error(
          source_ + ": " + (path.empty() ? "the config" : "the value at '" + std::string(path) + "'") +
          " nests deeper than " + std::to_string(max_nesting) + " levels, the most a config may have");
    }
  }

  static std::string kind(const json& value) {
    switch (value.type()) {
      case json::value_t::null:
        return "null";
      case json::value_t::boolean:
        return "a boolean";
      case json::value_t::string:
        return "a string";
      case json::value_t::array:
        return "an array";
      case json::value_t::object:
        return "an object";
      case json::value_t::number_integer:
      case json::value_t::number_unsigned:
        return "an integer";
      case json::value_t::number_float:
        return "a number";
      default:
        return value.type_name();
    }
  }

  // nlohmann's message without its prefix, cut short: it quotes the token it stopped at, which
  // may be a whole file's worth of digits.
  static std::string parse_message(const json::exception& e) {
    std::string what = e.what();
    if (const auto bracket = what.find("] ");
        what.starts_with("[json.exception") && bracket != std::string::npos)
      what = what.substr(bracket + 2);
    if (const auto colon = what.rfind(": "); colon != std::string::npos) what = what.substr(colon + 2);
    if (what.size() > 160) what = what.substr(0, 157) + "...";
    return what;
  }

  template <class T>
  T convert(const json& value, std::string_view path) const {
    const auto mismatch = [&](std::string_view expected) {
      return Error(source_ + ": '" + std::string(path) + "' is " + describe(value) + ", expected " +
                   std::string(expected));
    };
    if constexpr (std::is_same_v<T, bool>) {
      if (!value.is_boolean()) throw mismatch("true or false");
      return value.get<bool>();
    } else if constexpr (std::is_arithmetic_v<T>) {
      // One rule with calls by name (detail::exact_number): an integer setting is never read
      // from 2.5, nor a float from 1e300.
      if (std::is_integral_v<T> ? !value.is_number_integer() : !value.is_number())
        throw mismatch(std::is_integral_v<T> ? "an integer" : "a number");
      std::optional<T> exact;
      if (value.is_number_unsigned()) {
        exact = detail::exact_number<T>(value.get<std::uint64_t>());
      } else if (value.is_number_integer()) {
        exact = detail::exact_number<T>(value.get<std::int64_t>());
      } else {
        exact = detail::exact_number<T>(value.get<double>());
      }
      if (!exact) throw mismatch(detail::exact_number_expectation<T>());
      return *exact;
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!value.is_string()) throw mismatch("a string");
      return value.get<std::string>();
    } else if constexpr (std::is_same_v<T, Config>) {
      if (!value.is_object()) throw mismatch("an object");
      return Config(value, source_ + " at '" + std::string(path) + "'");
    } else if constexpr (is_vector<T>::value) {  // each element by the rules above, named by its index
      if (!value.is_array()) throw mismatch("an array");
      T elements;
      elements.reserve(value.size());
      for (std::size_t i = 0; i < value.size(); ++i) {
        elements.push_back(
            convert<typename T::value_type>(value[i], std::string(path) + "." + std::to_string(i)));
      }
      return elements;
    } else {
      try {
        return value.template get<T>();
      } catch (const json::exception& e) {
        throw mismatch(std::string("a value that converts: ") + e.what());
      }
    }
  }

  static void merge_into(json& base, const json& overrides) {
    for (const auto& item : overrides.items()) {
      auto found = base.find(item.key());
      if (found != base.end() && found->is_object() && item.value().is_object()) {
        merge_into(*found, item.value());
      } else {
        base[item.key()] = item.value();
      }
    }
  }

  json json_;
  std::string source_ = "config";
};

}  // namespace batchpipe
