#pragma once
// One-pass CPU kernels for ImagesBatch's normalize, flip and crop on contiguous tensors: each
// reads its input once and writes its output once, where the tensor-operation versions make
// three to five passes and as many temporaries (a padded copy, two gathers, a flipped copy).
// normalize → flip → crop of uint8 pixels takes one pass in all: normalize leaves its result
// deferred (the pixels and their map), flip adds its choices to it, and crop reads each pixel
// once, from the flipped place, and writes its float once. All of them are one kernel, a crop
// (crop_into): flip is a crop of the whole image with the items' flips, and a deferred result
// read before a crop is made by one.
// flip and crop move data and give exactly what the tensor operations give; normalize computes
// `v * (scale / std) - mean / std` (PixelMap), within a few units in the last place of the tensor
// operations' floats, and gives the same floats whether a crop folds it in or not. Which path a batch takes
// does not depend on prefetch or threads, so a seed still gives one result. Other devices and layouts take
// the tensor operations.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/buffer_pool.hpp>
#include <batchpipe/detail/deferred_tensor.hpp>
#include <batchpipe/detail/item_ranges.hpp>

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <any>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// True when the one-pass kernels give what the tensor operations give for `x`: items of at
/// least one dimension each, dense on the CPU, contiguous, not empty; and nothing the raw bytes
/// do not carry: no gradient to track (the kernels write a new tensor outside autograd) and no
/// lazy conjugation or negation (a view's flag, not its bytes). The tensor operations take the rest.
inline bool one_pass_applies(const at::Tensor& x) {
  return x.dim() >= 2 && x.device().is_cpu() && x.layout() == at::kStrided && x.is_contiguous() &&
         x.numel() > 0 && !x.requires_grad() && !x.is_conj() && !x.is_neg();
}

/// Where each item of images [items, ..., H, W] is cut: [height, width] at corner (y0[i], x0[i])
/// of the image padded with zeros by `padding` on every side, the image flipped left-right first
/// where flipped[i] is set. Null corners are 0 and null flips are none.
struct Window {
  int64_t height = 0, width = 0, padding = 0;
  const int64_t* y0 = nullptr;
  const int64_t* x0 = nullptr;
  const bool* flipped = nullptr;

  /// The rows of an image of `x`: items [items, width] have one.
  static int64_t rows_of(const at::Tensor& x) { return x.dim() > 2 ? x.size(-2) : 1; }
  /// The whole image of `x`, flipped where `flipped` says.
  static Window whole(const at::Tensor& x, const bool* flipped) {
    return {rows_of(x), x.size(-1), 0, nullptr, nullptr, flipped};
  }
  /// The shape of `x` cut to the window.
  std::vector<int64_t> shape_of(const at::Tensor& x) const {
    auto shape = x.sizes().vec();
    if (x.dim() > 2) shape[shape.size() - 2] = height;
    shape.back() = width;
    return shape;
  }
};

/// The window of every item of `x` (not empty: one_pass_applies) into `out`, each row written by `copy(out,
/// in, count, step)`: `count` output elements from in[0], in[step], in[2 * step], ... (step -1 where
/// flipped). Out and In are the output's and input's element types; the padding is zero bytes. One pass: each
/// input element read at most once, each output element written once; the items split over the arena
/// (item_ranges.hpp).
template <class Out, class In, class Copy>
void crop_into(const In* in, Out* out, const at::Tensor& x, const Window& window, Copy copy) {
  const int64_t in_h = Window::rows_of(x), in_w = x.size(-1), height = window.height, width = window.width;
  const auto items = x.size(0);
  const auto planes_per_item = x.numel() / (items * in_h * in_w);
  const auto zero = [](Out* to, int64_t count) {
    if constexpr (std::is_arithmetic_v<Out>) {
      std::fill(to, to + count, Out{});  // inlined: the padding is a few elements
    } else {
      std::memset(to, 0, static_cast<std::size_t>(count) * sizeof(Out));
    }
  };
  const auto cut = [&](int64_t i) {
    const int64_t top = (window.y0 ? window.y0[i] : 0) - window.padding;  // the image row under output row 0
    // The columns of the output row that fall inside the image, and where they start in the
    // (flipped) image.
    const int64_t first_x = (window.x0 ? window.x0[i] : 0) - window.padding;
    const int64_t from = std::clamp<int64_t>(-first_x, 0, width);
    const int64_t to = std::clamp<int64_t>(in_w - first_x, from, width);
    const bool flipped = window.flipped && window.flipped[i];
    // Column c of the flipped image is column in_w - 1 - c of the image.
    const int64_t source_x = flipped ? in_w - 1 - (first_x + from) : first_x + from;
    for (int64_t p = 0; p < planes_per_item; ++p) {
      const int64_t plane = i * planes_per_item + p;
      const In* in_plane = in + plane * in_h * in_w;
      Out* out_plane = out + plane * height * width;
      for (int64_t y = 0; y < height; ++y) {
        Out* row = out_plane + y * width;
        const int64_t source_y = top + y;
        if (source_y < 0 || source_y >= in_h || from == to) {
          zero(row, width);
          continue;
        }
        zero(row, from);
        copy(row + from, in_plane + source_y * in_w + source_x, to - from, flipped ? -1 : 1);
        zero(row + to, width - to);
      }
    }
  };
  const auto bytes_out = static_cast<std::size_t>(items * planes_per_item * height * width) * sizeof(Out);
  for_item_ranges(items, bytes_out, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) cut(i);
  });
}

/// An element of `Size` bytes: the kernels that only move data treat every type as one of these
/// (copied with memcpy, never read as the struct), so that each element's copy compiles to one
/// move.
template <std::size_t Size>
struct Element {
  unsigned char bytes[Size];
};

/// Calls `f(Element<size>{})` for the element size of `x` (LibTorch's sizes); an Error naming
/// `action` for any other.
template <class F>
void with_element_of(const at::Tensor& x, const char* action, F&& f) {
  switch (x.element_size()) {
    case 1:
      return f(Element<1>{});
    case 2:
      return f(Element<2>{});
    case 4:
      return f(Element<4>{});
    case 8:
      return f(Element<8>{});
    case 16:
      return f(Element<16>{});
    default:
      throw Error(std::string(action) + ": elements of " + std::to_string(x.element_size()) + " bytes (" +
                  std::string(x.dtype().name()) + ") are not supported");
  }
}

/// The window of every item of `x`, any element type, the elements moved as they are. `action`
/// names the caller in errors.
inline at::Tensor cut_items(const at::Tensor& x, const Window& window, const char* action) {
  at::Tensor out = BufferPool::empty(window.shape_of(x), x.options());
  with_element_of(x, action, [&](auto element) {
    using E = decltype(element);
    crop_into(static_cast<const E*>(x.data_ptr()), static_cast<E*>(out.data_ptr()), x, window,
              [](E* to, const E* from, int64_t count, int64_t step) {
                if (step == 1) {
                  std::memcpy(to, from, static_cast<std::size_t>(count) * sizeof(E));
                  return;
                }
                for (int64_t c = 0; c < count; ++c) std::memcpy(to + c, from - c, sizeof(E));
              });
  });
  return out;
}

/// The rows of `x` [items, ..., width] of each item whose flag is set, reversed (left-right).
inline at::Tensor flip_items(const at::Tensor& x, const bool* flipped) {
  return cut_items(x, Window::whole(x, flipped), "flip");
}

/// normalize's `(v * scale - mean) / std` of uint8 pixels v as the one-pass kernels compute it:
/// `v * slope + offset` with slope = scale / std and offset = -mean / std, the product rounded
/// before the sum (never one fused multiply-add, whatever the build's flags). Four pixels at a
/// time in SSE2 vectors (x86's, with GCC's and Clang's vector extensions): a crop of 256 Fashion-MNIST images
/// takes 45 us on one core where a table lookup per pixel took 70 (the division per pixel, 80 to 110). The
/// table holds the same 256 values, made by the same vector code, for the pixels outside a
/// vector (and for every pixel where SSE2 is missing), so that every path gives the same floats.
/// They are within a few units in the last place of the tensor operations' (multiply, subtract,
/// divide).
struct PixelMap {
  float slope = 1, offset = 0;
  std::array<float, 256> table{};
};

#if defined(__SSE2__) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
#define BATCHPIPE_DETAIL_PIXEL_VECTORS 1  // undefined again after map_pixels
// GCC's and Clang's vector extensions, not <emmintrin.h>: the same SSE2 code, without the
// intrinsics headers every user's translation unit would parse (a quarter of a second with Clang).
using Float4 = float __attribute__((vector_size(16)));
using Int4 = std::int32_t __attribute__((vector_size(16)));
/// Four pixels from `p` (p[0..3]) mapped: [f(p[0]), f(p[1]), f(p[2]), f(p[3])].
inline Float4 map_four_pixels(const std::uint8_t* p, Float4 slope, Float4 offset) {
  const Int4 wide = {p[0], p[1], p[2], p[3]};
  Float4 product = __builtin_convertvector(wide, Float4) * slope;
  __asm__("" : "+x"(product));  // rounded here: the compiler may not fuse it with the add
  return product + offset;
}
inline void store_four(float* out, Float4 four) { std::memcpy(out, &four, sizeof four); }
#endif

inline PixelMap pixel_map(float mean, float std, float scale) {
  PixelMap map{scale / std, -mean / std, {}};
  for (int v = 0; v < 256; v += 4) {
#ifdef BATCHPIPE_DETAIL_PIXEL_VECTORS
    const std::uint8_t four[4] = {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v + 1),
                                  static_cast<std::uint8_t>(v + 2), static_cast<std::uint8_t>(v + 3)};
    store_four(map.table.data() + v, map_four_pixels(four, Float4{} + map.slope, Float4{} + map.offset));
#else
    // The product of an 8-bit pixel and a float is exact in a double, so converting it rounds
    // once, as a float multiply does, and keeps the compiler from fusing it with the add.
    for (int w = v; w < v + 4; ++w) {
      const auto product = static_cast<float>(static_cast<double>(w) * static_cast<double>(map.slope));
      map.table[static_cast<std::size_t>(w)] = product + map.offset;
    }
#endif
  }
  return map;
}

/// `count` pixels from in[0], in[step], in[2 * step], ... (step 1 or -1) mapped into out[0..count).
inline void map_pixels(float* out, const std::uint8_t* in, int64_t count, int64_t step, const PixelMap& map) {
  int64_t c = 0;
#ifdef BATCHPIPE_DETAIL_PIXEL_VECTORS
  const Float4 slope = Float4{} + map.slope, offset = Float4{} + map.offset;
  if (step == 1) {
    for (; c + 4 <= count; c += 4) store_four(out + c, map_four_pixels(in + c, slope, offset));
  } else {
    for (; c + 4 <= count; c += 4) {  // in[-c - 3 .. -c], reversed
      const Float4 four = map_four_pixels(in - c - 3, slope, offset);
      store_four(out + c, Float4{four[3], four[2], four[1], four[0]});
    }
  }
#endif
  for (; c < count; ++c) out[c] = map.table[in[c * step]];
}

#undef BATCHPIPE_DETAIL_PIXEL_VECTORS

/// normalize's result on uint8 pixels, left deferred (detail/deferred_tensor.hpp) as the
/// DeferredTensor's recipe: the pixels' map and the flips asked for since.
struct NormalizedPixels {
  PixelMap map{};
  at::Tensor flipped;  // bool per item; undefined: none

  /// Adds a flip of the items whose flag is set in `flags` (bool per item, the recipe's from
  /// now on): flipping twice restores an item.
  void flip(at::Tensor flags) {
    if (flipped.defined()) {
      const bool* before = flipped.data_ptr<bool>();
      bool* now = flags.data_ptr<bool>();
      for (int64_t i = 0; i < flags.numel(); ++i) now[i] = now[i] != before[i];
    }
    flipped = std::move(flags);
  }
};

/// The window of every item of the uint8 pixels `x`, normalized through `pixels`' map and
/// flipped as it says, into a new float tensor: one pass.
inline at::Tensor cut_and_normalize(const at::Tensor& x, const NormalizedPixels& pixels, Window window) {
  window.flipped = pixels.flipped.defined() ? pixels.flipped.data_ptr<bool>() : nullptr;
  at::Tensor out = BufferPool::empty(window.shape_of(x), x.options().dtype(at::kFloat));
  const PixelMap& map = pixels.map;
  crop_into(x.data_ptr<std::uint8_t>(), out.data_ptr<float>(), x, window,
            [&map](float* to, const std::uint8_t* from, int64_t count, int64_t step) {
              map_pixels(to, from, count, step, map);
            });
  return out;
}

/// normalize of uint8 pixels `x` left deferred: the floats are made when the component is read,
/// or by a crop (ImagesBatchBase::crop) in the same pass as its cut.
inline DeferredTensor deferred_normalize(at::Tensor x, const PixelMap& map) {
  return {std::move(x), NormalizedPixels{map, {}}, [](const DeferredTensor& d) {
            const auto& pixels = std::any_cast<const NormalizedPixels&>(d.recipe);
            if (pixels.flipped.defined())
              return cut_and_normalize(d.input, pixels, Window::whole(d.input, nullptr));
            // Nothing to move: one flat pass per range of items.
            at::Tensor out = BufferPool::empty(d.input.sizes(), d.input.options().dtype(at::kFloat));
            const auto* in = d.input.data_ptr<std::uint8_t>();
            auto* o = out.data_ptr<float>();
            const int64_t per_item = d.input.numel() / d.input.size(0);
            for_item_ranges(d.input.size(0), static_cast<std::size_t>(out.numel()) * sizeof(float),
                            [&](int64_t first, int64_t last) {
                              map_pixels(o + first * per_item, in + first * per_item,
                                         (last - first) * per_item, 1, pixels.map);
                            });
            return out;
          }};
}

/// normalize_channels of uint8 images `x` [items, channels, ...] (one_pass_applies): each
/// channel's pixels through its own map (`maps[c]`, pixel_map's floats), into a new float
/// tensor in one pass.
inline at::Tensor normalize_channels_of(const at::Tensor& x, const std::vector<PixelMap>& maps) {
  at::Tensor out = BufferPool::empty(x.sizes(), x.options().dtype(at::kFloat));
  const auto* in = x.data_ptr<std::uint8_t>();
  auto* o = out.data_ptr<float>();
  const auto channels = static_cast<int64_t>(maps.size());
  const int64_t plane = x.numel() / (x.size(0) * channels);
  for_item_ranges(x.size(0), static_cast<std::size_t>(out.numel()) * sizeof(float),
                  [&](int64_t first, int64_t last) {
                    for (int64_t i = first; i < last; ++i) {
                      for (int64_t c = 0; c < channels; ++c) {
                        const int64_t at = (i * channels + c) * plane;
                        map_pixels(o + at, in + at, plane, 1, maps[static_cast<std::size_t>(c)]);
                      }
                    }
                  });
  return out;
}

/// The recipe of a deferred normalize held by `value`, if it holds one whose pixels the kernels
/// take; else nullptr.
inline DeferredTensor* deferred_normalize_in(std::any* value) {
  auto* deferred = value ? std::any_cast<DeferredTensor>(value) : nullptr;
  const bool ours =
      deferred && std::any_cast<NormalizedPixels>(&deferred->recipe) && one_pass_applies(deferred->input);
  return ours ? deferred : nullptr;
}

}  // namespace batchpipe::detail
