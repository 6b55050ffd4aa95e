#pragma once
/// @file images_batch.hpp
/// @brief ImagesBatch: a ready batch type for image data ("images" and "labels" components)
/// with the usual actions: load and dump, normalize, cast, per-item random flip and crop, and
/// moving to a device. Derive from ImagesBatchBase<YourBatch> to add your own actions.

#include <batchpipe/core/action.hpp>
#include <batchpipe/core/batch.hpp>
#include <batchpipe/core/parallel.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/images/detail/image_kernels.hpp>
#include <batchpipe/images/detail/resize_items.hpp>
#include <batchpipe/images/image_list.hpp>
#include <batchpipe/io.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <any>
#include <cmath>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

namespace batchpipe {

namespace detail {
/// Whether `format` names images ("png", "jpg"; to read, also "image": any format the decoder
/// knows). load and dump share the names, so that what dump writes, load reads by the same one.
inline bool is_image_format(const std::string& format, bool reading) {
  return format == "png" || format == "jpg" || (reading && format == "image");
}

/// Reads one item's file in the given format: "npy", "idx", "png", "jpg" or "image".
inline at::Tensor read_item_file(const std::filesystem::path& path, const std::string& format) {
  if (format == "npy") return io::read_npy(path);
  if (format == "idx") return io::read_idx(path);
#if BATCHPIPE_HAS_STB
  if (is_image_format(format, true)) return io::read_image(path);
#endif
  throw Error("unknown file format '" + format + "' (formats: npy, idx, png, jpg, image)");
}

/// An Error unless items can be written in `format`: "npy", "idx", "png" or "jpg".
inline void check_write_format(const std::string& format) {
  bool known = format == "npy" || format == "idx";
#if BATCHPIPE_HAS_STB
  known = known || is_image_format(format, false);
#endif
  if (!known) throw Error("unknown file format '" + printable(format) + "' (formats: npy, idx, png, jpg)");
}

inline void write_item_file(const std::filesystem::path& path, const std::string& format,
                            const at::Tensor& item) {
  check_write_format(format);
  if (format == "npy") return io::write_npy(path, item);
  if (format == "idx") return io::write_idx(path, item);
#if BATCHPIPE_HAS_STB
  io::write_image(path, item);
#endif
}
}  // namespace detail

/// @brief The actions of ImagesBatch, for batch classes that add their own.
///
/// Images are tensors [n, height, width] or [n, channels, height, width]; the random actions
/// draw one decision per item from the item's own stream (see for_each_item), so a seed gives
/// the same augmentations for any prefetch and thread count.
///
/// @code
/// struct FashionBatch : bp::ImagesBatchBase<FashionBatch> {
///   MODEL(mlp)() { ... }
///   ACTION(train, .model = "mlp", .singleton = true)(Net& net) { ... }
/// };
/// auto prep = dataset.pipeline().normalize(0.2860f, 0.3530f, 1 / 255.f).flip(0.5).crop(28, 28, 2);
/// @endcode
template <class Derived>
class ImagesBatchBase : public Batch<Derived> {
 public:
  /// Reads every item's file (from a files index) into `component`, stacked. `format` is "npy",
  /// "idx", or images: "png", "jpg" (the names dump writes) or "image" (any format the decoder
  /// knows; each file is decoded by its content whichever image name is given), in parallel.
  BATCHPIPE_ACTION(load, .params = "format, component = \"images\"")
  (std::string format, std::string component = "images") {
    const Index& items = this->index();
    std::vector<std::filesystem::path> paths;
    for (std::size_t i = 0; i < items.size(); ++i) paths.push_back(items.path(i));
#if BATCHPIPE_HAS_STB
    if (detail::is_image_format(format, true)) {
      (*this)[component] = io::read_images(paths);
      return;
    }
#endif
    std::vector<at::Tensor> rows(paths.size());
    for_each_item(*this, [&](std::size_t i, Random&) { rows[i] = detail::read_item_file(paths[i], format); });
    for (std::size_t i = 1; i < rows.size(); ++i) {
      if (rows[i].sizes() != rows[0].sizes()) {
        throw FileError(paths[i], "item of shape " + detail::shape_string(rows[i].sizes()) +
                                      " among items of shape " + detail::shape_string(rows[0].sizes()));
      }
    }
    (*this)[component] = rows.empty() ? at::Tensor() : at::stack(rows);
  }

  /// Decodes every item's image file (a files index: ImageFolder, Index::from_files) into an
  /// ImageList in `component`: one image [channels, height, width] per item, each of its file's
  /// own size, decoded in parallel, each file read once. `channels` 1, 3 or 4 converts whatever
  /// the file holds (0 keeps the file's own, which must then agree). JPEGs decode at the smallest
  /// of libjpeg-turbo's DCT scales that keeps at least min_height x min_width (0: full size):
  /// before a resize to 224, `min_height = 224, min_width = 224` skips most of a photograph's
  /// decoding (the pixels differ from a full decode's by the scaling's rounding).
  BATCHPIPE_ACTION(load_images,
                   .params = "channels = 3, min_height = 0, min_width = 0, component = \"images\"")
  (int64_t channels = 3, int64_t min_height = 0, int64_t min_width = 0, std::string component = "images") {
    if (channels != 0 && channels != 1 && channels != 3 && channels != 4) {
      throw Error("load_images: channels " + std::to_string(channels) +
                  " is not 1, 3 or 4 (0 keeps the file's own)");
    }
    if (min_height < 0 || min_width < 0) {
      throw Error("load_images: min_height " + std::to_string(min_height) + " and min_width " +
                  std::to_string(min_width) + " must not be negative");
    }
#if BATCHPIPE_HAS_STB
    const Index& items = this->index();
    std::vector<at::Tensor> images(this->size());
    const io::ImageDecodeOptions options{static_cast<int>(channels), min_width, min_height};
    for_each_item(*this, [&](std::size_t i, Random&) {
      images[i] = io::decode_image_file(items.path(i), options).permute({2, 0, 1});
    });
    for (std::size_t i = 1; i < images.size(); ++i) {  // channels 0: each file's own, which must agree
      if (images[i].size(0) == images[0].size(0)) continue;
      throw FileError(items.path(i), "has " + std::to_string(images[i].size(0)) + " channels and " +
                                         items.path(0).string() + " has " +
                                         std::to_string(images[0].size(0)) +
                                         ": one batch holds one channel count (load_images(3) converts)");
    }
    this->set(component, ImageList(std::move(images)));
#else
    throw Error("load_images: batchpipe was built without stb (libstb-dev), which its image decoders need");
#endif
  }

  /// Writes each item's row of `component` to `folder/<id>.<format>` ("npy", "idx", "png",
  /// "jpg"), creating the folder. An id that is not a plain file name (`../x`, `/tmp/x`, `a/b`)
  /// is an Error naming it, before anything is written: nothing lands outside `folder`.
  BATCHPIPE_ACTION(dump, .params = "folder, format = \"npy\", component = \"images\"")
  (std::filesystem::path folder, std::string format = "npy", std::string component = "images") {
    detail::check_write_format(format);  // before the ids: a format is never taken for an id
    std::vector<std::string> names(this->size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      names[i] = this->index().id(i).to_string() + "." + format;
      if (!detail::is_plain_file_name(names[i])) {
        throw Error("dump: item '" + detail::printable(this->index().id(i).to_string()) + "' (position " +
                    std::to_string(i) + ") has an id that is not a plain file name, so " +
                    "its file would not be in " + folder.string());
      }
    }
    std::filesystem::create_directories(folder);
    const at::Tensor data = this->get(component).cpu();
    for_each_item(*this, [&](std::size_t i, Random&) {
      detail::write_item_file(folder / names[i], format, data[static_cast<int64_t>(i)]);
    });
  }

  /// `(x * scale - mean) / std` in float: `normalize(0.2860f, 0.3530f, 1 / 255.f)` on uint8 pixels.
  /// On uint8 pixels the floats are made when first read: a crop right after (a flip between
  /// them too) cuts and normalizes in one pass.
  BATCHPIPE_ACTION(normalize, .params = "mean, std, scale = 1.0, component = \"images\"")
  (float mean, float std, float scale = 1.0f, std::string component = "images") {
    stack_if_list("normalize", component);
    auto& x = (*this)[component];
    if (x.scalar_type() == at::kByte && detail::one_pass_applies(x)) {
      this->set(component, detail::deferred_normalize(x, detail::pixel_map(mean, std, scale)));
    } else {
      x = x.to(at::kFloat).mul(scale).sub_(mean).div_(std);
    }
  }

  /// Converts `component` to `dtype`.
  BATCHPIPE_ACTION(cast, .params = "dtype, component = \"images\"")
  (at::ScalarType dtype, std::string component = "images") {
    auto& x = (*this)[component];
    x = x.to(dtype);
  }

  /// Moves every tensor component to `device`.
  BATCHPIPE_ACTION(to_device, .params = "device")(at::Device device) {
    for (const auto& name : this->components()) {
      if (auto* tensor = this->template try_get<at::Tensor>(name)) *tensor = tensor->to(device);
    }
  }

  /// Flips each item left-right with probability p.
  BATCHPIPE_ACTION(flip, .params = "p = 0.5, component = \"images\"")
  (double p = 0.5, std::string component = "images") {
    const Random items(this->random()());
    at::Tensor chosen = at::empty({static_cast<int64_t>(this->size())}, at::kBool);
    auto* flag = chosen.data_ptr<bool>();
    for (std::size_t i = 0; i < this->size(); ++i) flag[i] = items.split(i).bernoulli(p);
    if (auto* list = this->template try_get<ImageList>(component)) {  // each item flipped alone
      auto images = images_of("flip", component);
      for (std::size_t i = 0; i < images.size(); ++i) {
        if (flag[i]) images[i] = images[i].flip({-1});
      }
      *list = ImageList(std::move(images));
      return;
    }
    if (auto* pixels = deferred_normalize(component)) {  // flipped as they are normalized
      check_items("flip", pixels->input);
      std::any_cast<detail::NormalizedPixels&>(pixels->recipe).flip(chosen);
      return;
    }
    auto& x = (*this)[component];
    check_items("flip", x);
    if (detail::one_pass_applies(x)) {
      x = detail::flip_items(x, flag);
      return;
    }
    std::vector<int64_t> mask_shape(static_cast<std::size_t>(x.dim()), 1);
    mask_shape[0] = x.size(0);
    x = at::where(chosen.to(x.device()).view(mask_shape), x.flip({-1}), x);
  }

  /// Crops each item to height x width after zero padding of `padding` on every side: at a
  /// random place with probability p, else at the centre.
  BATCHPIPE_ACTION(crop, .params = "height, width, padding = 0, p = 1.0, component = \"images\"")
  (int64_t height, int64_t width, int64_t padding = 0, double p = 1.0, std::string component = "images") {
    stack_if_list("crop", component);
    auto* pixels = deferred_normalize(component);  // then cut and normalized at once
    at::Tensor& x = pixels ? pixels->input : (*this)[component];
    if (padding < 0) throw Error("crop: padding " + std::to_string(padding) + " is negative");
    if (x.dim() < 3) {
      throw Error("crop: the images must be [items, ..., height, width], not " +
                  detail::shape_string(x.sizes()));
    }
    check_items("crop", x);
    auto padded_shape = x.sizes().vec();
    padded_shape[padded_shape.size() - 2] += 2 * padding;
    padded_shape.back() += 2 * padding;
    const int64_t room_y = padded_shape[padded_shape.size() - 2] - height,
                  room_x = padded_shape.back() - width;
    if (room_y < 0 || room_x < 0) {
      throw Error("crop: " + std::to_string(height) + "x" + std::to_string(width) + " does not fit in " +
                  detail::shape_string(padded_shape) + " (after padding " + std::to_string(padding) + ")");
    }
    // Each item's corner, from the item's own stream; then two gathers cut every item at once.
    const auto n = static_cast<int64_t>(this->size());
    at::Tensor corners = at::empty({2, n}, at::kLong);
    auto* y0 = corners.data_ptr<int64_t>();
    auto* x0 = y0 + n;
    const Random items(this->random()());
    for (int64_t i = 0; i < n; ++i) {
      Random rng = items.split(static_cast<std::uint64_t>(i));
      const bool random_place = rng.bernoulli(p);
      y0[i] =
          random_place ? static_cast<int64_t>(rng.below(static_cast<std::uint64_t>(room_y) + 1)) : room_y / 2;
      x0[i] =
          random_place ? static_cast<int64_t>(rng.below(static_cast<std::uint64_t>(room_x) + 1)) : room_x / 2;
    }
    const detail::Window window{height, width, padding, y0, x0, nullptr};
    if (pixels) {
      const auto& recipe = std::any_cast<const detail::NormalizedPixels&>(pixels->recipe);
      this->set(component, detail::cut_and_normalize(x, recipe, window));
      return;
    }
    if (detail::one_pass_applies(x)) {
      x = detail::cut_items(x, window, "crop");
      return;
    }
    const at::Tensor padded = padding ? at::constant_pad_nd(x, {padding, padding, padding, padding}) : x;
    corners = corners.to(x.device());
    std::vector<int64_t> item_shape(static_cast<std::size_t>(x.dim()), 1);
    item_shape[0] = n;
    auto offsets = [&](int64_t which, int64_t size, int64_t axis) {
      std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
      shape[static_cast<std::size_t>(x.dim() + axis)] = size;
      return corners[which].view(item_shape).add(at::arange(size, corners.options()).view(shape));
    };
    auto rows_shape = padded.sizes().vec();
    rows_shape[rows_shape.size() - 2] = height;
    const at::Tensor rows = padded.gather(-2, offsets(0, height, -2).expand(rows_shape));
    auto out_shape = rows_shape;
    out_shape.back() = width;
    x = rows.gather(-1, offsets(1, width, -1).expand(out_shape));
  }

  /// Resizes every item's image to height x width, as Pillow's Image.resize (and so
  /// torchvision's Resize on PIL images) does: `filter` "bilinear", "bicubic" or "box" (also
  /// "area"), antialiased when shrinking; same pixels for uint8, same taps for float. Takes an
  /// ImageList or a tensor [items, channels, height, width] and leaves a tensor.
  BATCHPIPE_ACTION(resize, .params = "height, width, filter = \"bilinear\", component = \"images\"")
  (int64_t height, int64_t width, std::string filter = "bilinear", std::string component = "images") {
    const auto items = images_of("resize", component);
    std::vector<detail::CropBox> boxes;
    for (const auto& image : items) boxes.push_back(detail::CropBox::whole(image));
    put_resized("resize", component, items, boxes, height, width, filter);
  }

  /// Resizes every item's image so that its shorter side is `size` and the longer keeps the
  /// image's proportions (torchvision's Resize(size)): an ImageList of items of their own sizes,
  /// for center_crop to cut.
  BATCHPIPE_ACTION(resize_shorter, .params = "size, filter = \"bilinear\", component = \"images\"")
  (int64_t size, std::string filter = "bilinear", std::string component = "images") {
    const auto items = images_of("resize_shorter", component);
    const auto kind = filter_named("resize_shorter", filter);
    if (size < 1) throw Error("resize_shorter: size " + std::to_string(size) + " is not positive");
    std::vector<at::Tensor> resized(items.size());
    for_each_item(*this, [&](std::size_t i, Random&) {
      const auto& image = items[i];
      const auto out = detail::shorter_side_size(image.size(1), image.size(2), size);
      resized[i] =
          detail::resize_items({image}, {detail::CropBox::whole(image)}, out.height, out.width, kind)[0];
    });
    this->set(component, ImageList(std::move(resized)));
  }

  /// torchvision's RandomResizedCrop for each item, from the item's own stream: a box of a share
  /// of the image's area in [scale_min, scale_max] and of aspect ratio (width / height) in
  /// [ratio_min, ratio_max] (log-uniform), at a random place, resized to height x width with
  /// `filter`. Takes an ImageList or a tensor; leaves a tensor [items, channels, height, width].
  BATCHPIPE_ACTION(random_resized_crop, .params =
                                            "height, width, scale_min = 0.08, scale_max = 1.0, "
                                            "ratio_min = 0.75, ratio_max = 1.3333333333333333, "
                                            "filter = \"bilinear\", component = \"images\"")
  (int64_t height, int64_t width, double scale_min = 0.08, double scale_max = 1.0, double ratio_min = 0.75,
   double ratio_max = 4.0 / 3.0, std::string filter = "bilinear", std::string component = "images") {
    if (!(0 < scale_min && scale_min <= scale_max && scale_max <= 1) ||
        !(0 < ratio_min && ratio_min <= ratio_max) || !std::isfinite(ratio_max)) {
      throw Error(
          "random_resized_crop: needs 0 < scale_min <= scale_max <= 1 and 0 < ratio_min <= ratio_max, got "
          "scale [" +
          detail::format_number(scale_min) + ", " + detail::format_number(scale_max) + "], ratio [" +
          detail::format_number(ratio_min) + ", " + detail::format_number(ratio_max) + "]");
    }
    const auto items = images_of("random_resized_crop", component);
    std::vector<detail::CropBox> boxes(items.size());
    const Random streams(this->random()());
    for (std::size_t i = 0; i < items.size(); ++i) {
      Random rng = streams.split(i);
      boxes[i] = detail::random_resized_box(items[i].size(1), items[i].size(2), scale_min, scale_max,
                                            ratio_min, ratio_max, rng);
    }
    put_resized("random_resized_crop", component, items, boxes, height, width, filter);
  }

  /// Cuts height x width from the centre of every item's image (torchvision's CenterCrop: an
  /// image smaller than the crop is padded with zeros around it). Takes an ImageList or a tensor;
  /// leaves a tensor [items, channels, height, width].
  BATCHPIPE_ACTION(center_crop, .params = "height, width, component = \"images\"")
  (int64_t height, int64_t width, std::string component = "images") {
    if (height < 1 || width < 1) {
      throw Error("center_crop: the size " + std::to_string(height) + "x" + std::to_string(width) +
                  " is not positive");
    }
    const auto items = images_of("center_crop", component);
    const auto channels = items.empty() ? int64_t{0} : items.front().size(0);
    at::Tensor out = at::zeros({static_cast<int64_t>(items.size()), channels, height, width},
                               items.empty() ? at::TensorOptions(at::kByte) : items.front().options());
    for_each_item(*this, [&](std::size_t i, Random&) {
      const auto box = detail::center_box(items[i].size(1), items[i].size(2), height, width);
      detail::copy_overlap(items[i], box, out[static_cast<int64_t>(i)]);
    });
    const auto* tensor = this->template try_get<at::Tensor>(component);
    this->set(component, tensor && tensor->dim() == 3 ? out.squeeze(1) : out);  // as resize leaves it
  }

  /// Stacks an ImageList in `component` into one tensor [items, channels, height, width]: an
  /// Error naming two items when their sizes differ. A tensor is left as it is.
  BATCHPIPE_ACTION(stack, .params = "component = \"images\"")(std::string component = "images") {
    if (const auto* list = this->template try_get<ImageList>(component)) this->set(component, list->stack());
  }

  /// `(x * scale - mean[c]) / std[c]` in float for each channel c of images [items, channels,
  /// ...] (an ImageList is stacked first): ImageNet's `normalize_channels({0.485f, 0.456f,
  /// 0.406f}, {0.229f, 0.224f, 0.225f}, 1 / 255.f)`. One mean and one std per channel.
  BATCHPIPE_ACTION(normalize_channels, .params = "mean, std, scale = 1.0, component = \"images\"")
  (std::vector<float> mean, std::vector<float> std, float scale = 1.0f, std::string component = "images") {
    stack_if_list("normalize_channels", component);
    const at::Tensor x = this->template get<at::Tensor>(component);
    if (x.dim() < 2 || mean.size() != static_cast<std::size_t>(x.size(1)) || std.size() != mean.size()) {
      throw Error("normalize_channels: " + std::to_string(mean.size()) + " means and " +
                  std::to_string(std.size()) + " stds for images " + detail::shape_string(x.sizes()) +
                  " (one of each per channel, dimension 1)");
    }
    for (const float s : std) {
      if (!(s != 0) || !std::isfinite(s))
        throw Error("normalize_channels: a std of " + detail::format_number(s));
    }
    if (x.scalar_type() == at::kByte && detail::one_pass_applies(x)) {  // one pass, pixel by pixel
      std::vector<detail::PixelMap> maps;
      for (std::size_t c = 0; c < mean.size(); ++c) maps.push_back(detail::pixel_map(mean[c], std[c], scale));
      this->set(component, detail::normalize_channels_of(x, maps));
      return;
    }
    std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
    shape[1] = x.size(1);
    const auto options = at::TensorOptions(at::kFloat);
    const at::Tensor m = at::tensor(at::ArrayRef<float>(mean), options).view(shape).to(x.device());
    const at::Tensor d = at::tensor(at::ArrayRef<float>(std), options).view(shape).to(x.device());
    this->set(component, x.to(at::kFloat).mul(scale).sub_(m).div_(d));
  }

  // flip and crop take normalize's result as it left it, deferred (see detail::access::
  // reads_deferred); not for users.
  template <class Action>
  static constexpr bool bp_reads_deferred =
      std::is_same_v<Action, bp_action_flip> || std::is_same_v<Action, bp_action_crop>;

 private:
  /// normalize's result on `component`, left deferred for the one-pass kernels; else nullptr.
  detail::DeferredTensor* deferred_normalize(const std::string& component) {
    return detail::deferred_normalize_in(detail::access::stored_component(*this, component));
  }

  /// The images of `component`, one per item: an ImageList's or a tensor's rows.
  std::vector<at::Tensor> images_of(const char* action, const std::string& component) {
    std::vector<at::Tensor> items;
    if (const auto* list = this->template try_get<ImageList>(component)) {
      items = detail::item_images(*list);
    } else {
      const at::Tensor& x = this->template get<at::Tensor>(component);
      if (x.dim() != 3 && x.dim() != 4) {
        throw Error(std::string(action) +
                    ": the images must be [items, channels, height, width] or an ImageList, not " +
                    detail::shape_string(x.sizes()));
      }
      items = detail::item_images(x);
    }
    if (items.size() != this->size()) {
      throw Error(std::string(action) + ": " + std::to_string(items.size()) + " images for " +
                  std::to_string(this->size()) + " items");
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (items[i].size(1) > 0 && items[i].size(2) > 0) continue;
      throw Error(std::string(action) + ": item " + std::to_string(i) + " is an empty image (" +
                  std::to_string(items[i].size(0)) + "x" + std::to_string(items[i].size(1)) + "x" +
                  std::to_string(items[i].size(2)) + ")");
    }
    return items;
  }

  /// An ImageList in `component` replaced by its items stacked, for actions that cut every item
  /// alike; an Error naming the action when the items' sizes differ.
  void stack_if_list(const char* action, const std::string& component) {
    const auto* list = this->template try_get<ImageList>(component);
    if (!list) return;
    try {
      this->set(component, list->stack());
    } catch (const Error& e) {
      throw Error(std::string(action) +
                  " cuts images of one size (random_resized_crop and center_crop cut images of "
                  "any size): " +
                  e.what());
    }
  }

  static detail::ResampleFilter filter_named(const char* action, const std::string& name) {
    detail::ResampleFilter filter{};
    if (!detail::parse_resample_filter(name, filter)) {
      throw Error(std::string(action) + ": unknown filter '" + detail::printable(name) +
                  "' (filters: bilinear, bicubic, box, area)");
    }
    return filter;
  }

  /// Each item's box resized to height x width into `component`, a tensor of the items' dtype
  /// (a [items, height, width] input stays without its channel dimension).
  void put_resized(const char* action, const std::string& component, const std::vector<at::Tensor>& items,
                   const std::vector<detail::CropBox>& boxes, int64_t height, int64_t width,
                   const std::string& filter) {
    const auto kind = filter_named(action, filter);
    if (height < 1 || width < 1) {
      throw Error(std::string(action) + ": the size " + std::to_string(height) + "x" + std::to_string(width) +
                  " is not positive");
    }
    const auto* tensor = this->template try_get<at::Tensor>(component);
    const bool planes = tensor && tensor->dim() == 3;
    const auto device = items.empty() ? at::Device(at::kCPU) : items.front().device();
    at::Tensor out = detail::resize_items(items, boxes, height, width, kind).to(device);
    this->set(component, planes ? out.squeeze(1) : out);
  }

  /// An Error unless the images `x` have one row per item: each item's draw picks its row.
  void check_items(const char* action, const at::Tensor& x) const {
    if (x.dim() > 0 && x.size(0) == static_cast<int64_t>(this->size())) return;
    throw Error(std::string(action) + ": the images " + detail::shape_string(x.sizes()) +
                " have not one row per item (" + std::to_string(this->size()) + " items)");
  }
};

/// @brief The ready batch type: ImagesBatchBase's actions, nothing else.
struct ImagesBatch : ImagesBatchBase<ImagesBatch> {};

}  // namespace batchpipe
