#pragma once
// Text helpers for error messages: lists of names and tensor shapes.

#include <string>

namespace batchpipe::detail {

/// "a, b, c" from the names of a range, or `empty` when there are none; `name_of` maps an
/// element to its name. Error messages list what exists beside what was asked for.
template <class Range, class NameOf>
std::string join_names(const Range& range, NameOf name_of, const std::string& empty = "none") {
  std::string joined;
  for (const auto& element : range) {
    if (!joined.empty()) joined += ", ";
    joined += name_of(element);
  }
  return joined.empty() ? empty : joined;
}

/// "[2, 28, 28]": a shape (a tensor's sizes(), or any range of integers) as text.
template <class Shape>
std::string shape_string(const Shape& shape) {
  // Appended, not "[" + ...: g++ 12 warns falsely (-Wstringop-overflow) on inserting at the front.
  std::string text = "[";
  text += join_names(
      shape, [](auto size) { return std::to_string(size); }, "");
  text += ']';
  return text;
}

}  // namespace batchpipe::detail
