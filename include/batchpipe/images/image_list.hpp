#pragma once
/// @file image_list.hpp
/// @brief ImageList: one image per item, each of its own height and width (a ragged batch), as
/// photographs of many sizes are decoded, until an action (resize, random_resized_crop,
/// center_crop) makes them agree and stack() makes one tensor of them.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace batchpipe {

/// @brief The images of a batch's items, each a tensor [channels, height, width] of its own size.
///
/// A component of a batch can hold an ImageList instead of a tensor: `load_images` makes one, and
/// the geometric actions of ImagesBatch take either. Items may be views of decoded pixels held
/// interleaved (height, width, channels), as decoders write them: the resize kernels read them in
/// place. All items have the same number of channels and the same dtype.
///
/// @code
/// auto& images = batch.get<bp::ImageList>("images");
/// for (std::size_t i = 0; i < images.size(); ++i) std::cout << images.height(i) << "x" << images.width(i);
/// at::Tensor stacked = images.stack();   // [items, channels, height, width] if all sizes agree
/// @endcode
class ImageList {
 public:
  ImageList() = default;
  /// Takes the items' images, each [channels, height, width] with the same channels and dtype.
  explicit ImageList(std::vector<at::Tensor> images) : images_(std::move(images)) {
    for (std::size_t i = 0; i < images_.size(); ++i) check_item(i);
  }

  /// The number of images: one per item.
  std::size_t size() const noexcept { return images_.size(); }
  /// Whether there are no images.
  bool empty() const noexcept { return images_.empty(); }
  /// Item i's image [channels, height, width].
  const at::Tensor& operator[](std::size_t i) const { return images_.at(i); }
  /// The channels every image has (0 when there are none).
  int64_t channels() const { return images_.empty() ? 0 : images_.front().size(0); }
  /// Item i's height.
  int64_t height(std::size_t i) const { return images_.at(i).size(1); }
  /// Item i's width.
  int64_t width(std::size_t i) const { return images_.at(i).size(2); }
  /// The images in item order, from the first.
  auto begin() const noexcept { return images_.begin(); }
  /// Past the last image.
  auto end() const noexcept { return images_.end(); }

  /// Whether every item has the first item's height and width.
  bool same_size() const {
    for (const auto& image : images_) {
      if (image.sizes() != images_.front().sizes()) return false;
    }
    return true;
  }

  /// The items stacked into one contiguous tensor [items, channels, height, width]. Items of
  /// different sizes: an Error naming the first item and one that differs, with their sizes.
  at::Tensor stack() const {
    if (images_.empty()) return at::empty({0, 0, 0, 0}, at::kByte);
    for (std::size_t i = 1; i < images_.size(); ++i) {
      if (images_[i].sizes() == images_[0].sizes()) continue;
      throw Error("cannot stack images of different sizes: item 0 is " + size_of(0) + " and item " +
                  std::to_string(i) + " is " + size_of(i) +
                  " (resize, random_resized_crop or center_crop makes them agree)");
    }
    auto shape = images_[0].sizes().vec();
    shape.insert(shape.begin(), static_cast<int64_t>(images_.size()));
    at::Tensor stacked = at::empty(shape, images_[0].options().memory_format(c10::MemoryFormat::Contiguous));
    for (std::size_t i = 0; i < images_.size(); ++i) stacked[static_cast<int64_t>(i)].copy_(images_[i]);
    return stacked;
  }

  /// "channels x height x width" of item i, as errors write it.
  std::string size_of(std::size_t i) const {
    const auto& image = images_.at(i);
    return std::to_string(image.size(0)) + "x" + std::to_string(image.size(1)) + "x" +
           std::to_string(image.size(2));
  }

 private:
  void check_item(std::size_t i) const {
    const at::Tensor& image = images_[i];
    if (!image.defined() || image.dim() != 3) {
      throw Error("ImageList: item " + std::to_string(i) + " is " +
                  (image.defined() ? detail::shape_string(image.sizes()) : std::string("undefined")) +
                  ", not an image [channels, height, width]");
    }
    const at::Tensor& first = images_.front();
    if (image.size(0) != first.size(0) || image.scalar_type() != first.scalar_type() ||
        image.device() != first.device()) {
      throw Error("ImageList: item " + std::to_string(i) + " (" + size_of(i) + ", " +
                  std::string(c10::toString(image.scalar_type())) + ") differs from item 0 (" + size_of(0) +
                  ", " + std::string(c10::toString(first.scalar_type())) + ") in channels, dtype or device");
    }
  }

  std::vector<at::Tensor> images_;
};

}  // namespace batchpipe
