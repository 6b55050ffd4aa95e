#pragma once
// The geometric actions' work on items of any size: each item's rectangle (a crop box) resampled
// to one output size (resample.hpp), written straight into the batch's tensor [items, channels,
// height, width]; the items split over the run's arena. And the boxes the random actions draw.

#include <batchpipe/core/error.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/images/detail/resample.hpp>
#include <batchpipe/images/image_list.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace batchpipe::detail {

/// An integer rectangle of an item's image: rows [top, top + height), columns [left, left + width).
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
  static CropBox whole(const at::Tensor& image) { return {0, 0, image.size(1), image.size(2)}; }
};

/// The images of a component, one [channels, height, width] per item: an ImageList's items or
/// the rows of a tensor [items, channels, height, width] ([items, height, width]: one channel).
inline std::vector<at::Tensor> item_images(const at::Tensor& images) {
  if (images.dim() != 3 && images.dim() != 4) {
    throw Error("the images must be [items, channels, height, width] or [items, height, width], not " +
                shape_string(images.sizes()));
  }
  std::vector<at::Tensor> items(static_cast<std::size_t>(images.size(0)));
  for (int64_t i = 0; i < images.size(0); ++i) {
    items[static_cast<std::size_t>(i)] = images.dim() == 4 ? images[i] : images[i].unsqueeze(0);
  }
  return items;
}
inline std::vector<at::Tensor> item_images(const ImageList& images) { return {images.begin(), images.end()}; }

/// Resamples `box` of `image` [channels, height, width] into `out`, contiguous [channels,
/// out height, out width] of the same dtype. uint8 (Pillow's fixed point), float and double.
inline void resize_image_into(const at::Tensor& image, const CropBox& box, ResampleFilter filter,
                              at::Tensor& out) {
  at::Tensor pixels = image.permute({1, 2, 0});  // interleaved, as the kernels read
  if (!pixels.is_contiguous() || !pixels.device().is_cpu()) pixels = pixels.cpu().contiguous();
  const int64_t channels = image.size(0), pitch = image.size(2) * channels;
  const auto run = [&](auto* data, auto* to) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(to)>>;
    const InterleavedImage<T> source{data + box.top * pitch + box.left * channels, box.height, box.width,
                                     channels, pitch};
    resample_image(source, SourceBox::whole(box.height, box.width), out.size(1), out.size(2), filter, to);
  };
  switch (image.scalar_type()) {
    case at::kByte:
      return run(pixels.data_ptr<std::uint8_t>(), out.data_ptr<std::uint8_t>());
    case at::kFloat:
      return run(pixels.data_ptr<float>(), out.data_ptr<float>());
    case at::kDouble:
      return run(pixels.data_ptr<double>(), out.data_ptr<double>());
    default:
      throw Error(std::string("cannot resize images of ") + c10::toString(image.scalar_type()) +
                  ": uint8, float or double");
  }
}

/// Item i's `boxes[i]` of `items` resampled to height x width, into one tensor [items, channels,
/// height, width] on the CPU, item by item in parallel on the current arena.
inline at::Tensor resize_items(const std::vector<at::Tensor>& items, const std::vector<CropBox>& boxes,
                               int64_t height, int64_t width, ResampleFilter filter) {
  if (height < 1 || width < 1) {
    throw Error("the output size " + std::to_string(height) + "x" + std::to_string(width) +
                " is not positive");
  }
  const int64_t channels = items.empty() ? 0 : items.front().size(0);
  at::Tensor out =
      at::empty({static_cast<int64_t>(items.size()), channels, height, width},
                items.empty() ? at::TensorOptions(at::kByte) : items.front().options().device(at::kCPU));
  tbb::parallel_for(std::size_t{0}, items.size(), [&](std::size_t i) {
    at::Tensor slot = out[static_cast<int64_t>(i)];
    resize_image_into(items[i], boxes[i], filter, slot);
  });
  return out;
}

/// torchvision's RandomResizedCrop.get_params, drawn from `rng`: a box of a share of the image's
/// area in [scale_min, scale_max] and an aspect ratio whose logarithm is uniform in [log
/// ratio_min, log ratio_max], ten tries, then the whole image cut to the nearest ratio allowed,
/// centred. Python's round (halves to even) is nearbyint.
inline CropBox random_resized_box(int64_t height, int64_t width, double scale_min, double scale_max,
                                  double ratio_min, double ratio_max, Random& rng) {
  const double area = static_cast<double>(height) * static_cast<double>(width);
  const double log_min = std::log(ratio_min), log_max = std::log(ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (scale_min + (scale_max - scale_min) * rng.uniform());
    const double ratio = std::exp(log_min + (log_max - log_min) * rng.uniform());
    // Compared as doubles: an extreme ratio gives sides no integer holds.
    const double wide = std::nearbyint(std::sqrt(target * ratio)),
                 high = std::nearbyint(std::sqrt(target / ratio));
    if (wide > 0 && wide <= static_cast<double>(width) && high > 0 && high <= static_cast<double>(height)) {
      const auto w = static_cast<int64_t>(wide), h = static_cast<int64_t>(high);
      const auto top = static_cast<int64_t>(rng.below(static_cast<std::uint64_t>(height - h + 1)));
      const auto left = static_cast<int64_t>(rng.below(static_cast<std::uint64_t>(width - w + 1)));
      return {top, left, h, w};
    }
  }
  // The whole image cut to the nearest ratio allowed; at least a pixel each way (torchvision's
  // rounding can give none for an extreme ratio).
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < ratio_min) {
    h = static_cast<int64_t>(
        std::clamp(std::nearbyint(static_cast<double>(w) / ratio_min), 1.0, static_cast<double>(height)));
  } else if (in_ratio > ratio_max) {
    w = static_cast<int64_t>(
        std::clamp(std::nearbyint(static_cast<double>(h) * ratio_max), 1.0, static_cast<double>(width)));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

/// torchvision's center_crop box on one axis: the offset rounded as Python rounds, or, for a crop
/// larger than the image, where torchvision's padding (the smaller half before) puts the image.
inline int64_t center_offset(int64_t size, int64_t out_size) {
  if (out_size > size) return -((out_size - size) / 2);
  return static_cast<int64_t>(std::nearbyint(static_cast<double>(size - out_size) / 2.0));
}
inline CropBox center_box(int64_t height, int64_t width, int64_t out_height, int64_t out_width) {
  return {center_offset(height, out_height), center_offset(width, out_width), out_height, out_width};
}

/// An image's height and width.
struct ImageSize {
  int64_t height = 0, width = 0;
};

/// The size torchvision's Resize(size) gives an image: the shorter side `size`, the longer in
/// proportion (truncated, as torchvision does).
inline ImageSize shorter_side_size(int64_t height, int64_t width, int64_t size) {
  if (width <= height)
    return {static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(height) /
                                 static_cast<double>(width)),
            size};
  return {size, static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(width) /
                                     static_cast<double>(height))};
}

/// Copies the part of `box` that lies inside `image` [channels, height, width] to the same place
/// of `out` [channels, box height, box width], which keeps what it holds elsewhere (zeros: a
/// crop padded where it reaches outside the image).
inline void copy_overlap(const at::Tensor& image, const CropBox& box, at::Tensor out) {
  const int64_t top = std::max<int64_t>(box.top, 0), left = std::max<int64_t>(box.left, 0);
  const int64_t bottom = std::min(box.top + box.height, image.size(1)),
                right = std::min(box.left + box.width, image.size(2));
  if (bottom <= top || right <= left) return;
  out.narrow(1, top - box.top, bottom - top)
      .narrow(2, left - box.left, right - left)
      .copy_(image.narrow(1, top, bottom - top).narrow(2, left, right - left));
}

}  // namespace batchpipe::detail
