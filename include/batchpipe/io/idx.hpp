#pragma once
/// @file io/idx.hpp
/// @brief IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or not.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/io/detail/checked_size.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace batchpipe::io {

namespace detail {

/// A gzip stream (zlib reads plain files through the same calls), closed by RAII.
struct GzFile {
  gzFile handle;
  GzFile(const std::filesystem::path& path, const char* mode) : handle(gzopen(path.c_str(), mode)) {}
  ~GzFile() {
    if (handle) gzclose(handle);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;
  explicit operator bool() const { return handle != nullptr; }

  /// Reads up to n bytes; returns how many were read. A corrupt gzip stream is an error.
  std::size_t read(void* into, std::size_t n, const std::filesystem::path& path) {
    std::size_t done = 0;
    while (done < n) {
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      const int got = gzread(handle, static_cast<char*>(into) + done, chunk);
      if (got < 0) {
        int code = 0;
        throw FileError(path, std::string("cannot decompress: ") + gzerror(handle, &code));
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

  void write(const void* from, std::size_t n, const std::filesystem::path& path) {
    std::size_t done = 0;
    while (done < n) {
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      if (gzwrite(handle, static_cast<const char*>(from) + done, chunk) <= 0) {
        throw FileError(path, "write failed");
      }
      done += chunk;
    }
  }
};

struct IdxType {
  std::uint8_t code;
  at::ScalarType dtype;
};

inline constexpr std::array<IdxType, 6> idx_types{{{0x08, at::kByte},
                                                   {0x09, at::kChar},
                                                   {0x0B, at::kShort},
                                                   {0x0C, at::kInt},
                                                   {0x0D, at::kFloat},
                                                   {0x0E, at::kDouble}}};

/// Reverses the bytes of each element in place (IDX stores big-endian).
inline void swap_bytes(void* data, std::size_t count, std::size_t element_size) {
  auto* bytes = static_cast<unsigned char*>(data);
  for (std::size_t i = 0; i < count; ++i)
    std::reverse(bytes + i * element_size, bytes + (i + 1) * element_size);
}

inline bool host_is_little_endian() { return std::endian::native == std::endian::little; }

}  // namespace detail

/// @brief Reads an IDX file, gzip-compressed or plain (told apart by the file's first bytes, not
/// its name), into a tensor of its shape and type (uint8 for images and labels). Checks the magic
/// number, the type code, the dimensions and that the file holds exactly the data they announce.
///
/// @code
/// auto images = bp::io::read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
/// // uint8 tensor [60000, 28, 28]
/// @endcode
inline at::Tensor read_idx(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw FileError(path, "no such file");
  detail::GzFile file(path, "rb");
  if (!file) throw FileError(path, "cannot open");

  std::array<std::uint8_t, 4> magic{};
  if (file.read(magic.data(), 4, path) != 4) throw FileError(path, "truncated: no IDX header");
  if (magic[0] != 0 || magic[1] != 0) throw FileError(path, "bad magic number: not an IDX file");
  const auto type = std::find_if(detail::idx_types.begin(), detail::idx_types.end(),
                                 [&](const auto& t) { return t.code == magic[2]; });
  if (type == detail::idx_types.end()) {
    constexpr char hex[] = "0123456789ABCDEF";
    throw FileError(path, std::string("unknown IDX type code 0x") + hex[magic[2] >> 4] + hex[magic[2] & 0xF]);
  }
  const std::size_t n_dims = magic[3];
  if (n_dims == 0) throw FileError(path, "an IDX file must have at least one dimension");

  std::vector<std::uint32_t> raw_dims(n_dims);
  if (file.read(raw_dims.data(), 4 * n_dims, path) != 4 * n_dims) {
    throw FileError(path, "truncated: the header announces " + std::to_string(n_dims) + " dimensions");
  }
  if (detail::host_is_little_endian()) detail::swap_bytes(raw_dims.data(), n_dims, 4);
  std::vector<int64_t> shape(raw_dims.begin(), raw_dims.end());

  // Nothing is allocated for more data than the file can hold (a compressed file: inflated).
  // Compressed or not, as zlib told by the first bytes (gzip's 0x1f 0x8b), not by the name: a
  // file saved without its .gz is still gzip.
  const std::uint64_t file_size = std::filesystem::file_size(path);
  const bool compressed = gzdirect(file.handle) == 0;
  const std::uint64_t header_size = 4 + 4 * n_dims;
  const std::uint64_t data_limit = compressed ? batchpipe::detail::gzip_inflated_limit(file_size)
                                              : file_size - std::min(file_size, header_size);
  const auto needed = batchpipe::detail::tensor_bytes(path, shape, c10::elementSize(type->dtype));
  if (needed > data_limit) {
    throw FileError(
        path, "truncated: shape " + batchpipe::detail::shape_string(shape) + " needs " +
                  std::to_string(needed) + " bytes" + " of data, " +
                  (compressed ? "more than a gzip file of " + std::to_string(file_size) + " bytes can hold"
                              : "the file has " + std::to_string(data_limit)));
  }
  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(type->dtype));
  const std::size_t expected = static_cast<std::size_t>(tensor.numel()) * tensor.element_size();
  const std::size_t got = file.read(tensor.data_ptr(), expected, path);
  if (got != expected) {
    throw FileError(path, "truncated: shape " + batchpipe::detail::shape_string(shape) + " needs " +
                              std::to_string(expected) + " bytes of data, the file has " +
                              std::to_string(got));
  }
  char extra = 0;
  if (file.read(&extra, 1, path) != 0) {
    throw FileError(path, "longer than its header says: data goes on past shape " +
                              batchpipe::detail::shape_string(shape));
  }
  if (detail::host_is_little_endian() && tensor.element_size() > 1) {
    detail::swap_bytes(tensor.data_ptr(), static_cast<std::size_t>(tensor.numel()), tensor.element_size());
  }
  return tensor;
}

/// @brief Writes a tensor (uint8, int8, int16, int32, float32 or float64) as an IDX file,
/// gzip-compressed when the name ends in ".gz".
inline void write_idx(const std::filesystem::path& path, const at::Tensor& tensor) {
  const auto type = std::find_if(detail::idx_types.begin(), detail::idx_types.end(),
                                 [&](const auto& t) { return t.dtype == tensor.scalar_type(); });
  if (type == detail::idx_types.end()) {
    throw FileError(path, std::string("IDX cannot hold dtype ") + c10::toString(tensor.scalar_type()));
  }
  if (tensor.dim() == 0 || tensor.dim() > 255) throw FileError(path, "IDX needs 1 to 255 dimensions");
  const bool gzip = path.extension() == ".gz";
  detail::GzFile file(path, gzip ? "wb6" : "wbT");
  if (!file) throw FileError(path, "cannot create");
  const std::array<std::uint8_t, 4> magic{0, 0, type->code, static_cast<std::uint8_t>(tensor.dim())};
  file.write(magic.data(), 4, path);
  std::vector<std::uint32_t> dims(tensor.sizes().begin(), tensor.sizes().end());
  if (detail::host_is_little_endian()) detail::swap_bytes(dims.data(), dims.size(), 4);
  file.write(dims.data(), 4 * dims.size(), path);
  at::Tensor data = tensor.cpu().contiguous().clone();
  if (detail::host_is_little_endian() && data.element_size() > 1) {
    detail::swap_bytes(data.data_ptr(), static_cast<std::size_t>(data.numel()), data.element_size());
  }
  file.write(data.data_ptr(), static_cast<std::size_t>(data.numel()) * data.element_size(), path);
}

}  // namespace batchpipe::io
