#pragma once
// Text helpers for messages and file names: lists of names, tensor shapes, names made safe to
// print or to use as a file's name.

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>

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

/// The length of the well-formed UTF-8 sequence at the start of `text` (1 to 4), or 0 when it
/// is not one: no overlong form, no surrogate, nothing past U+10FFFF (Unicode's table 3-7).
inline std::size_t utf8_sequence_length(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned lead = byte(0);
  if (lead < 0x80) return 1;
  std::size_t length = 0;
  unsigned low = 0x80, high = 0xbf;  // the second byte's range
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  }
  if (length == 0 || length > text.size() || byte(1) < low || byte(1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
  }
  return length;
}

/// `text` with every control character (C0, DEL and C1, which a terminal also obeys) and every
/// byte that is not UTF-8 written as `\xNN`: a user's name printed on a terminal can then move
/// no cursor and start no escape sequence, and is valid in XML once its markup characters are
/// escaped.
inline std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const auto byte = static_cast<unsigned char>(text[0]);
    const std::size_t length = utf8_sequence_length(text);
    const bool c1 = length == 2 && byte == 0xc2 && static_cast<unsigned char>(text[1]) < 0xa0;
    const std::size_t taken = length > 0 ? length : 1;
    if (length > 0 && byte >= 0x20 && byte != 0x7f && !c1) {
      out += text.substr(0, taken);
    } else {
      for (std::size_t i = 0; i < taken; ++i) {  // each byte of the sequence, written out
        char escaped[5];
        std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<unsigned char>(text[i]));
        out += escaped;
      }
    }
    text.remove_prefix(taken);
  }
  return out;
}

/// Whether `name` names a file in a folder and nothing else: not empty, not "." or "..", without a
/// separator or a NUL byte (so that folder / name stays inside the folder).
inline bool is_plain_file_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\\\0", 3)) == std::string_view::npos;
}

/// A number as messages write it: up to 6 significant digits ("0.08", "1e+300", "nan").
inline std::string format_number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

}  // namespace batchpipe::detail
