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

#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace batchpipe::io {

/// @brief Decodes one image file into a uint8 tensor [channels, height, width]. `channels` 0
/// keeps the file's own; 1, 3 or 4 converts.
inline at::Tensor read_image(const std::filesystem::path& path, int channels = 0) {
  if (!std::filesystem::exists(path)) throw FileError(path, "no such file");
  int width = 0, height = 0, in_file = 0;
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
