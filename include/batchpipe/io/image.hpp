#pragma once
/// @file io/image.hpp
/// @brief Image files: JPEG (libjpeg-turbo, scaled in the DCT on request), PNG (libspng) and
/// every other format stb knows, each file read once and decoded from memory into uint8 tensors
/// ([height, width, channels] from decode_image, [channels, height, width] from read_image);
/// batches of files are decoded in parallel. Written with stb.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/io/detail/file_bytes.hpp>
#include <batchpipe/io/detail/image_decoders.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <oneapi/tbb/parallel_for.h>
#include <stb/stb_image_write.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace batchpipe::io {

/// @brief How an image is decoded (decode_image, decode_image_file).
struct ImageDecodeOptions {
  /// The channels of the result: 1 (grey), 3 (RGB) or 4 (RGBA), converted from what the file
  /// holds; 0 keeps the file's own (2 for grey and alpha).
  int channels = 0;
  /// JPEG: decode at the smallest of libjpeg-turbo's fast DCT scales (1/8, 1/4, 1/2, 1) that
  /// still gives at least this many columns and rows: when a 4000 px photograph will be resized
  /// to 224, most of its decoding is skipped. 0: full size. Other formats decode at full size.
  int64_t min_width = 0;
  /// JPEG: at least this many rows (as min_width).
  int64_t min_height = 0;
};

/// @brief Decodes an image held in memory (`name` says which file in errors) into a uint8
/// tensor [height, width, channels]: JPEG with libjpeg-turbo, PNG with libspng, every other
/// format stb knows with stb. A corrupt, truncated or empty file, a header announcing more
/// pixels than the bytes can hold, a CMYK JPEG: a FileError naming `name`.
inline at::Tensor decode_image(std::span<const std::uint8_t> bytes, const std::filesystem::path& name,
                               const ImageDecodeOptions& options = {}) {
  const int channels = options.channels;
  // stb asserts on a count outside 0 to 4 (a crash, not an error); 2 (grey and alpha) is none of
  // the conversions offered.
  if (channels != 0 && channels != 1 && channels != 3 && channels != 4) {
    throw FileError(name, "cannot decode image into " + std::to_string(channels) +
                              " channels: the count must be 1, 3 or 4 (0 keeps the file's own)");
  }
  if (bytes.empty()) throw FileError(name, "cannot decode image: the file is empty");
#if BATCHPIPE_HAS_TURBOJPEG
  if (detail::is_jpeg(bytes))
    return detail::decode_jpeg(bytes, name, channels, options.min_width, options.min_height);
#endif
#if BATCHPIPE_HAS_SPNG
  if (detail::is_png(bytes)) return detail::decode_png(bytes, name, channels);
#endif
  return detail::decode_with_stb(bytes, name, channels);
}

/// @brief Reads an image file once and decodes it (decode_image) into [height, width, channels].
/// A file over 1 GiB is refused (detail::whole_file_limit): no photograph is that large, and a
/// sparse file or a device would otherwise be read into memory whole.
inline at::Tensor decode_image_file(const std::filesystem::path& path,
                                    const ImageDecodeOptions& options = {}) {
  const auto bytes = detail::read_file_bytes(path, detail::whole_file_limit);
  return decode_image(bytes, path, options);
}

/// @brief Decodes one image file into a uint8 tensor [channels, height, width]. `channels` 0
/// keeps the file's own; 1, 3 or 4 converts; any other count is an error.
inline at::Tensor read_image(const std::filesystem::path& path, int channels = 0) {
  return decode_image_file(path, {.channels = channels}).permute({2, 0, 1}).contiguous();
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
