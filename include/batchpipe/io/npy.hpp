#pragma once
/// @file io/npy.hpp
/// @brief NumPy `.npy` arrays, read and written, so data moves to and from Python tools.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/io/detail/checked_size.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace batchpipe::io {

namespace detail {

struct NpyType {
  const char* descr;  // without the byte-order character
  at::ScalarType dtype;
};

inline constexpr std::array<NpyType, 9> npy_types{{{"b1", at::kBool},
                                                   {"u1", at::kByte},
                                                   {"i1", at::kChar},
                                                   {"i2", at::kShort},
                                                   {"i4", at::kInt},
                                                   {"i8", at::kLong},
                                                   {"f2", at::kHalf},
                                                   {"f4", at::kFloat},
                                                   {"f8", at::kDouble}}};

/// The value of `key` in the header dictionary: the text between "'key':" and the next
/// top-level comma or closing brace.
inline std::optional<std::string> npy_field(const std::string& header, const std::string& key) {
  const auto at = header.find("'" + key + "'");
  if (at == std::string::npos) return std::nullopt;
  auto start = header.find(':', at);
  if (start == std::string::npos) return std::nullopt;
  ++start;
  int depth = 0;
  std::size_t end = start;
  for (; end < header.size(); ++end) {
    const char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  std::string value = header.substr(start, end - start);
  value.erase(0, value.find_first_not_of(" "));
  value.erase(value.find_last_not_of(" ") + 1);
  return value;
}

/// The shape tuple of a header, "(60000, 28, 28)", "(5,)" or "()": whole numbers between commas,
/// with an optional comma after the last one ("(,)" and "(5,,)" are malformed).
inline std::vector<int64_t> npy_shape(const std::string& text, const std::filesystem::path& path) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')')
    throw FileError(path, "malformed shape " + text);
  std::vector<int64_t> shape;
  const std::string inner = text.substr(1, text.size() - 2);
  if (inner.find_first_not_of(' ') == std::string::npos) return shape;  // "()": a scalar
  for (std::size_t pos = 0;;) {
    const auto comma = inner.find(',', pos);
    std::string item = inner.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item.empty()) {
      if (comma == std::string::npos && !shape.empty()) break;  // the trailing comma of "(5,)"
      throw FileError(path, "malformed shape " + text + ": a size is missing");
    }
    int64_t size = -1;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), size);
    if (error != std::errc() || end != item.data() + item.size() || size < 0) {
      throw FileError(path, "malformed shape " + text + ": '" + item + "' is not a size");
    }
    shape.push_back(size);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return shape;
}

/// The header's fortran_order: True or False, nothing else.
inline bool npy_fortran_order(const std::string& text, const std::filesystem::path& path) {
  if (text == "True") return true;
  if (text == "False") return false;
  throw FileError(path, "malformed header: fortran_order is " + text + ", not True or False");
}

}  // namespace detail

/// @brief Reads a `.npy` file (format 1.0 to 3.0; bool, int8-64, uint8, float16-64; C or
/// Fortran order, little-endian) into a tensor of the same shape and type.
///
/// @code
/// at::Tensor features = bp::io::read_npy("features.npy");
/// @endcode
inline at::Tensor read_npy(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, std::filesystem::exists(path) ? "cannot open" : "no such file");
  std::array<char, 8> preamble{};
  if (!in.read(preamble.data(), 8)) throw FileError(path, "truncated: no .npy header");
  if (std::memcmp(preamble.data(), "\x93NUMPY", 6) != 0)
    throw FileError(path, "bad magic number: not a .npy file");
  const int major = static_cast<unsigned char>(preamble[6]);
  std::size_t header_size = 0;
  if (major == 1) {
    std::array<unsigned char, 2> size{};
    if (!in.read(reinterpret_cast<char*>(size.data()), 2)) throw FileError(path, "truncated header");
    header_size = size[0] | (size[1] << 8);
  } else if (major == 2 || major == 3) {
    std::array<unsigned char, 4> size{};
    if (!in.read(reinterpret_cast<char*>(size.data()), 4)) throw FileError(path, "truncated header");
    header_size = size[0] | (size[1] << 8) | (size[2] << 16) | (static_cast<std::size_t>(size[3]) << 24);
  } else {
    throw FileError(path, "unsupported .npy format version " + std::to_string(major));
  }
  // Nothing is allocated for more than the file holds: a header size or a shape that announce
  // more are errors before any allocation.
  const std::uint64_t file_size = std::filesystem::file_size(path);
  const std::uint64_t preamble_size = major == 1 ? 10 : 12;
  if (header_size > file_size - std::min<std::uint64_t>(file_size, preamble_size)) {
    throw FileError(path, "truncated header: it announces " + std::to_string(header_size) +
                              " bytes, the file has " + std::to_string(file_size));
  }
  std::string header(header_size, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header_size)))
    throw FileError(path, "truncated header");

  const auto descr = detail::npy_field(header, "descr");
  const auto fortran = detail::npy_field(header, "fortran_order");
  const auto shape_text = detail::npy_field(header, "shape");
  if (!descr || !fortran || !shape_text) throw FileError(path, "malformed header: " + header);
  if (descr->size() < 4 || descr->front() != '\'' || descr->back() != '\'') {
    throw FileError(path, "malformed dtype " + *descr);
  }
  const std::string type = descr->substr(1, descr->size() - 2);  // drop the quotes
  if (type.size() < 2) throw FileError(path, "malformed dtype " + *descr);
  // NumPy writes one of these four; any other first character is no byte order at all.
  if (std::string_view("<>|=").find(type[0]) == std::string_view::npos) {
    throw FileError(path, "malformed dtype " + *descr + ": its byte order is not <, >, | or =");
  }
  if (type[0] == '>' && type.substr(1) != "b1" && type.substr(1) != "u1" && type.substr(1) != "i1") {
    throw FileError(path, "big-endian arrays (" + type + ") are not supported");
  }
  const auto known = std::find_if(detail::npy_types.begin(), detail::npy_types.end(),
                                  [&](const auto& t) { return type.substr(1) == t.descr; });
  if (known == detail::npy_types.end()) throw FileError(path, "unsupported dtype " + type);
  auto shape = detail::npy_shape(*shape_text, path);
  const bool fortran_order = detail::npy_fortran_order(*fortran, path);
  if (fortran_order) std::reverse(shape.begin(), shape.end());

  const std::uint64_t data_limit =
      file_size - std::min<std::uint64_t>(file_size, preamble_size + header_size);
  const auto needed = batchpipe::detail::tensor_bytes(path, shape, c10::elementSize(known->dtype));
  if (needed > data_limit) {
    throw FileError(path, "truncated: shape " + batchpipe::detail::shape_string(shape) + " of " + type +
                              " needs " + std::to_string(needed) + " bytes" + " of data, the file has " +
                              std::to_string(data_limit));
  }
  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(known->dtype));
  const auto bytes =
      static_cast<std::streamsize>(tensor.numel() * static_cast<int64_t>(tensor.element_size()));
  in.read(static_cast<char*>(tensor.data_ptr()), bytes);
  if (in.gcount() != bytes) {
    throw FileError(path, "truncated: shape " + batchpipe::detail::shape_string(shape) + " of " + type +
                              " needs " + std::to_string(bytes) + " bytes of data, the file has " +
                              std::to_string(in.gcount()));
  }
  if (in.peek() != std::ifstream::traits_type::eof()) {
    throw FileError(path, "longer than its header says: data goes on past shape " +
                              batchpipe::detail::shape_string(shape));
  }
  if (fortran_order && tensor.dim() > 1) {
    std::vector<int64_t> reversed(static_cast<std::size_t>(tensor.dim()));
    for (int64_t d = 0; d < tensor.dim(); ++d) reversed[static_cast<std::size_t>(d)] = tensor.dim() - 1 - d;
    tensor = tensor.permute(reversed).contiguous();
  }
  return tensor;
}

/// @brief Writes a tensor as a `.npy` file (format 1.0, C order, little-endian); readable by
/// `numpy.load`.
inline void write_npy(const std::filesystem::path& path, const at::Tensor& tensor) {
  const auto known = std::find_if(detail::npy_types.begin(), detail::npy_types.end(),
                                  [&](const auto& t) { return t.dtype == tensor.scalar_type(); });
  if (known == detail::npy_types.end()) {
    throw FileError(path, std::string(".npy cannot hold dtype ") + c10::toString(tensor.scalar_type()));
  }
  const bool single_byte = tensor.element_size() == 1;
  std::string header = std::string("{'descr': '") +
                       (single_byte                                  ? "|"
                        : std::endian::native == std::endian::little ? "<"
                                                                     : ">") +
                       known->descr + "', 'fortran_order': False, 'shape': (";
  for (int64_t d = 0; d < tensor.dim(); ++d)
    header += std::to_string(tensor.size(d)) + (tensor.dim() == 1 ? "," : (d + 1 < tensor.dim() ? ", " : ""));
  header += "), }";
  // Pad so that the data starts on a 64-byte boundary, as NumPy does; the header ends in '\n'.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 65535) throw FileError(path, "shape too long for a .npy 1.0 header");

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw FileError(path, "cannot create");
  out.write("\x93NUMPY\x01\x00", 8);
  const std::array<char, 2> size{static_cast<char>(header.size() & 0xFF),
                                 static_cast<char>(header.size() >> 8)};
  out.write(size.data(), 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  const at::Tensor data = tensor.cpu().contiguous();
  out.write(static_cast<const char*>(data.data_ptr()),
            static_cast<std::streamsize>(data.numel() * static_cast<int64_t>(data.element_size())));
  if (!out) throw FileError(path, "write failed");
}

}  // namespace batchpipe::io
