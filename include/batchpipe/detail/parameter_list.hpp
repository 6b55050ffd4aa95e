#pragma once
// ACTION(..., .params = "mean, std = 0.25"): the parameter names of an action and their defaults
// (JSON text). Counted and checked at compile time, split at run time.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// One declared parameter: its name and its default as JSON text (empty: none).
struct DeclaredParameter {
  std::string name;
  std::string default_json;
};

constexpr bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

constexpr std::string_view trimmed(std::string_view text) {
  while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  return text;
}

/// The list cut at its top-level commas (commas inside a default's brackets or strings stay).
/// Calls f(piece) for each piece, in order.
template <class F>
constexpr void for_each_parameter_text(std::string_view list, F f) {
  if (trimmed(list).empty()) return;
  int depth = 0;
  bool in_string = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const char c = list[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == ',' && depth == 0) {
      f(list.substr(start, i - start));
      start = i + 1;
    }
  }
  f(list.substr(start));
}

/// The name part of one piece ("std" of "std = 0.25").
constexpr std::string_view parameter_name(std::string_view piece) {
  const std::size_t equals = piece.find('=');
  return trimmed(equals == std::string_view::npos ? piece : piece.substr(0, equals));
}

constexpr bool is_identifier(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

/// How many parameters the list declares.
constexpr std::size_t count_parameters(std::string_view list) {
  std::size_t count = 0;
  for_each_parameter_text(list, [&](std::string_view) { ++count; });
  return count;
}

/// True when every name is an identifier, no name repeats, and every '=' has a default after it.
constexpr bool valid_parameter_list(std::string_view list) {
  bool valid = true;
  std::size_t index = 0;
  for_each_parameter_text(list, [&](std::string_view piece) {
    const std::string_view name = parameter_name(piece);
    const std::size_t equals = piece.find('=');
    if (!is_identifier(name) ||
        (equals != std::string_view::npos && trimmed(piece.substr(equals + 1)).empty()))
      valid = false;
    std::size_t other = 0;
    for_each_parameter_text(list, [&](std::string_view earlier) {
      if (other++ < index && parameter_name(earlier) == name) valid = false;
    });
    ++index;
  });
  return valid;
}

/// The declared parameters, names and default texts.
inline std::vector<DeclaredParameter> split_parameters(std::string_view list) {
  std::vector<DeclaredParameter> result;
  for_each_parameter_text(list, [&](std::string_view piece) {
    const std::size_t equals = piece.find('=');
    result.push_back(
        {std::string(parameter_name(piece)),
         equals == std::string_view::npos ? std::string() : std::string(trimmed(piece.substr(equals + 1)))});
  });
  return result;
}

}  // namespace batchpipe::detail
