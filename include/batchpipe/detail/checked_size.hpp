#pragma once
// Sizes that come from a file are checked before anything is allocated for them: a header that
// announces more data than the file can hold (or a size that overflows) is an error, never a
// multi-gigabyte allocation.

#include <cstdint>
#include <limits>
#include <string>

namespace batchpipe::detail {

inline constexpr std::uint64_t saturated_size = std::numeric_limits<std::uint64_t>::max();

/// The bytes that `shape` elements of `element_size` bytes take; saturated_size when the product
/// overflows. The sizes must not be negative.
template <class Shape>
std::uint64_t shape_bytes(const Shape& shape, std::uint64_t element_size) {
  std::uint64_t bytes = element_size;
  for (const auto size : shape) {
    const auto dim = static_cast<std::uint64_t>(size);
    if (dim != 0 && bytes > saturated_size / dim) return saturated_size;
    bytes *= dim;
  }
  return bytes;
}

/// "160 bytes", or "more than 2^64 bytes" for a saturated size.
inline std::string bytes_text(std::uint64_t bytes) {
  return bytes == saturated_size ? std::string("more than 2^64 bytes") : std::to_string(bytes) + " bytes";
}

/// The most data a gzip stream of `compressed` bytes can inflate to: deflate's best ratio is
/// 1032 to 1.
constexpr std::uint64_t gzip_inflated_limit(std::uint64_t compressed) {
  constexpr std::uint64_t ratio = 1032;
  return compressed > saturated_size / ratio ? saturated_size : compressed * ratio;
}

}  // namespace batchpipe::detail
