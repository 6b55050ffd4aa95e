#pragma once
// Sizes that come from a file are checked before anything is allocated for them: a header that
// announces more data than the file can hold (or a size that overflows) is an error, never a
// multi-gigabyte allocation.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>

namespace batchpipe::detail {

inline constexpr std::uint64_t saturated_size = std::numeric_limits<std::uint64_t>::max();

/// The bytes that `shape` elements of `element_size` bytes take; saturated_size when the shape
/// is too large for a tensor: when the product of its non-zero sizes (in bytes) overflows a
/// signed 64-bit count. A zero size does not make any shape fit: a tensor's strides are the
/// products of the sizes after each dimension, and they must fit too. The sizes must not be
/// negative.
template <class Shape>
std::uint64_t shape_bytes(const Shape& shape, std::uint64_t element_size) {
  constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t nonzero = element_size;
  bool empty = false;
  for (const auto size : shape) {
    const auto dim = static_cast<std::uint64_t>(size);
    if (dim == 0) {
      empty = true;
      continue;
    }
    if (nonzero > limit / dim) return saturated_size;
    nonzero *= dim;
  }
  return empty ? 0 : nonzero;
}

/// The bytes of data that a shape read from `path` needs; a FileError naming the file when no
/// tensor can have that shape.
template <class Shape>
std::uint64_t tensor_bytes(const std::filesystem::path& path, const Shape& shape,
                           std::uint64_t element_size) {
  const std::uint64_t bytes = shape_bytes(shape, element_size);
  if (bytes == saturated_size) {
    throw FileError(path, "shape " + shape_string(shape) +
                              " is too large for a tensor: its sizes multiply past 2^63 bytes");
  }
  return bytes;
}

/// The most data a gzip stream of `compressed` bytes can inflate to: deflate's best ratio is
/// 1032 to 1.
constexpr std::uint64_t gzip_inflated_limit(std::uint64_t compressed) {
  constexpr std::uint64_t ratio = 1032;
  return compressed > saturated_size / ratio ? saturated_size : compressed * ratio;
}

}  // namespace batchpipe::detail
