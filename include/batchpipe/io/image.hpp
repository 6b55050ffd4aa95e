#pragma once
/// @file io/image.hpp
/// @brief PNG / JPEG / BMP / ... image files, decoded with stb (Debian's libstb-dev) into uint8
/// tensors [channels, height, width]; batches of files are decoded in parallel.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <oneapi/tbb/parallel_for.h>
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace batchpipe::io {

namespace detail {

/// The most pixel bytes an image file of `file_size` bytes can hold, with room to spare: stb's
/// formats compress at most about 11000 to 1 (GIF's LZW: up to 4093 pixels per 12-bit code,
/// decoded to 4 bytes each; deflate in PNG: 1032 to 1; JPEG: about 1000; run lengths: 128).
constexpr std::uint64_t image_decoded_limit(std::uint64_t file_size) { return (file_size + 1) * 16384; }

/// An image whose header announces more pixels than its file can hold is an error before stb
/// allocates them: a 50-byte header may announce gigabytes.
inline void check_image_size(const std::filesystem::path& path, int width, int height, int channels) {
  const auto file_size = std::filesystem::file_size(path);
  const auto bytes = static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(height) *
                     static_cast<std::uint64_t>(channels);
  if (bytes > image_decoded_limit(file_size)) {
    throw FileError(path, "cannot decode image: its header announces " + std::to_string(width) + "x" +
                              std::to_string(height) + " pixels, more than a file of " +
                              std::to_string(file_size) + " bytes can hold");
  }
}

/// stb grows its PNG buffer to each chunk's announced length before it reads the chunk, so a
/// PNG file's chunks are walked first: none may announce more bytes than the file has left.
inline void check_png_chunks(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::array<unsigned char, 8> signature{};
  if (!in.read(reinterpret_cast<char*>(signature.data()), 8) ||
      std::memcmp(signature.data(), "\x89PNG\r\n\x1a\n", 8) != 0) {
    return;  // not a PNG file
  }
  const auto file_size = std::filesystem::file_size(path);
  std::uint64_t offset = 8;
  std::array<unsigned char, 8> header{};  // length (big-endian) and type
  while (in.read(reinterpret_cast<char*>(header.data()), 8)) {
    const std::uint64_t length =
        (std::uint64_t{header[0]} << 24) | (header[1] << 16) | (header[2] << 8) | header[3];
    offset += 8;
    if (length + 4 > file_size - offset) {  // the data and its CRC
      throw FileError(path, "cannot decode image: a PNG chunk announces " + std::to_string(length) +
                                " bytes, the file has " + std::to_string(file_size - offset) + " left");
    }
    offset += length + 4;
    in.seekg(static_cast<std::streamoff>(offset));
  }
}

}  // namespace detail

/// @brief Decodes one image file into a uint8 tensor [channels, height, width]. `channels` 0
/// keeps the file's own; 1, 3 or 4 converts; any other count is an error.
inline at::Tensor read_image(const std::filesystem::path& path, int channels = 0) {
  // stb asserts on a count outside 0 to 4 (a crash, not an error); 2 (gray and alpha) is none of
  // the conversions this reader offers.
  if (channels != 0 && channels != 1 && channels != 3 && channels != 4) {
    throw FileError(path, "cannot decode image into " + std::to_string(channels) +
                              " channels: the count must be 1, 3 or 4 (0 keeps the file's own)");
  }
  if (!std::filesystem::exists(path)) throw FileError(path, "no such file");
  int width = 0, height = 0, in_file = 0;
  if (!stbi_info(path.c_str(), &width, &height, &in_file)) {
    throw FileError(path, std::string("cannot decode image: ") + stbi_failure_reason());
  }
  detail::check_image_size(path, width, height, channels ? channels : in_file);
  detail::check_png_chunks(path);
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(
      stbi_load(path.c_str(), &width, &height, &in_file, channels), stbi_image_free);
  if (!pixels) throw FileError(path, std::string("cannot decode image: ") + stbi_failure_reason());
  const int c = channels ? channels : in_file;
  // clone, not contiguous(): with one channel the permuted view is already contiguous and would
  // keep pointing into stb's buffer, freed on return.
  return at::from_blob(pixels.get(), {height, width, c}, at::kByte)
      .permute({2, 0, 1})
      .clone(at::MemoryFormat::Contiguous);
}

/// @brief Decodes many image files in parallel (on the current oneTBB arena) and stacks them
/// into [n, channels, height, width]. All must have the same size; the error names the first
/// that does not, and any file that fails.
inline at::Tensor read_images(const std::vector<std::filesystem::path>& paths, int channels = 0) {
  std::vector<at::Tensor> images(paths.size());
  std::vector<std::exception_ptr> errors(paths.size());
  tbb::parallel_for(std::size_t{0}, paths.size(), [&](std::size_t i) {
    try {
      images[i] = read_image(paths[i], channels);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  });
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  if (paths.empty()) return at::empty({0, channels, 0, 0}, at::kByte);
  at::Tensor stacked =
      at::empty({static_cast<int64_t>(paths.size()), images[0].size(0), images[0].size(1), images[0].size(2)},
                at::kByte);
  for (std::size_t i = 0; i < images.size(); ++i) {
    if (images[i].sizes() != images[0].sizes()) {
      throw FileError(paths[i], "image of shape " + batchpipe::detail::shape_string(images[i].sizes()) +
                                    " among images of shape " +
                                    batchpipe::detail::shape_string(images[0].sizes()) + " (" +
                                    paths[0].string() + ")");
    }
    stacked[static_cast<int64_t>(i)].copy_(images[i]);
  }
  return stacked;
}

/// @brief Writes a uint8 tensor [channels, height, width] (1, 3 or 4 channels) as PNG, or JPEG
/// when the name ends in .jpg / .jpeg.
inline void write_image(const std::filesystem::path& path, const at::Tensor& image) {
  if (image.scalar_type() != at::kByte || image.dim() != 3 || image.size(0) < 1 || image.size(0) > 4) {
    throw FileError(path, "write_image takes a uint8 tensor [channels 1-4, height, width], got " +
                              std::string(c10::toString(image.scalar_type())) + " " +
                              batchpipe::detail::shape_string(image.sizes()));
  }
  const at::Tensor pixels = image.permute({1, 2, 0}).contiguous().cpu();
  const int c = static_cast<int>(image.size(0)), h = static_cast<int>(image.size(1)),
            w = static_cast<int>(image.size(2));
  const auto extension = path.extension().string();
  const bool jpeg = extension == ".jpg" || extension == ".jpeg";
  const int ok = jpeg ? stbi_write_jpg(path.c_str(), w, h, c, pixels.data_ptr(), 95)
                      : stbi_write_png(path.c_str(), w, h, c, pixels.data_ptr(), w * c);
  if (!ok) throw FileError(path, "cannot write image");
}

}  // namespace batchpipe::io
