#pragma once
// Separable resampling of one image, as Pillow's Image.resize does it (Pillow 9, libImaging/
// Resample.c), so that a pipeline resized here gives the pixels that torchvision's transforms give
// on PIL images: the same filters (box, bilinear, bicubic), widened by the scale when shrinking
// (antialiased), the same taps from the same rounding, the same 22-bit fixed-point weights for
// uint8 and the same order (columns first, into uint8 rows, then rows). Float images take the
// same taps in floating point. A source box of fractional coordinates is resampled as Pillow's
// `box` argument does: the taps reach outside the box up to the image's edges.
//
// The source is interleaved (height, width, channels) with any row pitch, as decoders write
// it; the result is planar (channels, height, width), as a batch holds it. The inner loops are
// plain loops over contiguous taps that compilers vectorise; the passes split no further than
// one image, which is what one item of a batch is.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace batchpipe::detail {

/// The filters a resize can take, by the names actions and configs use.
enum class ResampleFilter { box, bilinear, bicubic };

/// The filter named `name` ("box", "area", "bilinear", "bicubic"); nullopt-like false when none.
inline bool parse_resample_filter(std::string_view name, ResampleFilter& filter) {
  if (name == "bilinear") filter = ResampleFilter::bilinear;
  else if (name == "box" || name == "area") filter = ResampleFilter::box;
  else if (name == "bicubic") filter = ResampleFilter::bicubic;
  else return false;
  return true;
}

/// The filter's weight at distance x (in source pixels at scale 1) and its support.
inline double filter_weight(ResampleFilter filter, double x) {
  switch (filter) {
    case ResampleFilter::box:
      return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
    case ResampleFilter::bilinear:
      x = std::abs(x);
      return x < 1.0 ? 1.0 - x : 0.0;
    case ResampleFilter::bicubic: {
      constexpr double a = -0.5;  // Pillow's (Keys' cubic with a = -0.5)
      x = std::abs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }
  }
  return 0.0;
}
inline double filter_support(ResampleFilter filter) {
  return filter == ResampleFilter::box ? 0.5 : filter == ResampleFilter::bilinear ? 1.0 : 2.0;
}

/// Where each output pixel of one axis reads: first source index, tap count, and `stride` weights
/// (normalised to sum 1, zero beyond the count), for uint8 also as 22-bit fixed point.
struct ResampleTaps {
  static constexpr int precision_bits = 32 - 8 - 2;
  std::vector<int64_t> first, count;
  std::vector<double> weights;
  std::vector<int32_t> fixed;
  int64_t stride = 0;

  /// The taps for `out_size` pixels from the source interval [box0, box1) of an axis of
  /// `in_size` pixels. box0 and box1 are floats, as Pillow takes them, so that its arithmetic
  /// (the box's width in float) is reproduced to the last bit.
  static ResampleTaps make(int64_t in_size, float box0, float box1, int64_t out_size, ResampleFilter filter) {
    ResampleTaps taps;
    const double scale = static_cast<double>(box1 - box0) / static_cast<double>(out_size);
    const double filter_scale = std::max(scale, 1.0);
    const double support = filter_support(filter) * filter_scale;
    taps.stride = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
    const auto n = static_cast<std::size_t>(out_size);
    taps.first.resize(n);
    taps.count.resize(n);
    taps.weights.assign(n * static_cast<std::size_t>(taps.stride), 0.0);
    for (int64_t o = 0; o < out_size; ++o) {
      const double center = box0 + (static_cast<double>(o) + 0.5) * scale;
      const auto lo = std::max<int64_t>(0, static_cast<int64_t>(center - support + 0.5));
      const auto hi = std::min<int64_t>(in_size, static_cast<int64_t>(center + support + 0.5));
      double* w = &taps.weights[static_cast<std::size_t>(o * taps.stride)];
      double total = 0;
      for (int64_t i = 0; i < hi - lo; ++i) {
        w[i] = filter_weight(filter, (static_cast<double>(i + lo) - center + 0.5) / filter_scale);
        total += w[i];
      }
      for (int64_t i = 0; i < hi - lo && total != 0.0; ++i) w[i] /= total;
      taps.first[static_cast<std::size_t>(o)] = lo;
      taps.count[static_cast<std::size_t>(o)] = std::max<int64_t>(0, hi - lo);
    }
    taps.fixed.resize(taps.weights.size());
    for (std::size_t i = 0; i < taps.weights.size(); ++i) {
      const double w = taps.weights[i] * (1 << precision_bits);
      taps.fixed[i] = static_cast<int32_t>(w < 0 ? w - 0.5 : w + 0.5);
    }
    return taps;
  }

  /// The first and one-past-last source index any output pixel reads.
  int64_t lowest() const { return first.empty() ? 0 : first.front(); }
  int64_t highest() const { return first.empty() ? 0 : first.back() + count.back(); }
};

/// One output value from `count` source values `step` apart and their weights: fixed point with
/// Pillow's rounding and clipping for uint8, floating point for the rest.
template <class T>
T resample_one(const T* in, int64_t step, const ResampleTaps& taps, int64_t o) {
  const auto at = static_cast<std::size_t>(o * taps.stride);
  const int64_t count = taps.count[static_cast<std::size_t>(o)];
  if constexpr (std::is_same_v<T, std::uint8_t>) {
    const int32_t* w = &taps.fixed[at];
    int32_t sum = 1 << (ResampleTaps::precision_bits - 1);
    for (int64_t i = 0; i < count; ++i) sum += static_cast<int32_t>(in[i * step]) * w[i];
    return static_cast<std::uint8_t>(std::clamp(sum >> ResampleTaps::precision_bits, 0, 255));
  } else {
    const double* w = &taps.weights[at];
    double sum = 0;
    for (int64_t i = 0; i < count; ++i) sum += static_cast<double>(in[i * step]) * w[i];
    return static_cast<T>(sum);
  }
}

/// A source image: interleaved pixels, `pitch` elements from one row to the next.
template <class T>
struct InterleavedImage {
  const T* data = nullptr;
  int64_t height = 0, width = 0, channels = 0, pitch = 0;
};

/// The fractional source box [x0, x1) x [y0, y1) a resize reads, in source pixels.
struct SourceBox {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  static SourceBox whole(int64_t height, int64_t width) {
    return {0, 0, static_cast<float>(width), static_cast<float>(height)};
  }
};

/// Resamples the box of `in` to out_height x out_width, written planar into `out`
/// ([channels, out_height, out_width], contiguous). Columns first, for only the rows the second
/// pass reads, into an interleaved buffer of T (uint8: rounded and clipped, as Pillow's
/// intermediate image); then rows.
template <class T>
void resample_image(const InterleavedImage<T>& in, const SourceBox& box, int64_t out_height, int64_t out_width,
                    ResampleFilter filter, T* out) {
  const auto across = ResampleTaps::make(in.width, box.x0, box.x1, out_width, filter);
  const auto down = ResampleTaps::make(in.height, box.y0, box.y1, out_height, filter);
  const int64_t first_row = down.lowest(), rows = down.highest() - first_row, c = in.channels;
  std::vector<T> columns(static_cast<std::size_t>(rows * out_width * c));
  for (int64_t y = 0; y < rows; ++y) {
    const T* row = in.data + (first_row + y) * in.pitch;
    T* to = &columns[static_cast<std::size_t>(y * out_width * c)];
    for (int64_t x = 0; x < out_width; ++x) {
      const T* from = row + across.first[static_cast<std::size_t>(x)] * c;
      for (int64_t k = 0; k < c; ++k) to[x * c + k] = resample_one(from + k, c, across, x);
    }
  }
  // Rows: each output row sums whole source rows into one accumulator, in tap order (the sums
  // Pillow makes pixel by pixel, in a loop compilers vectorise), then writes it planar.
  using Sum = std::conditional_t<std::is_same_v<T, std::uint8_t>, int32_t, double>;
  const int64_t row_size = out_width * c, plane = out_height * out_width;
  std::vector<Sum> sums(static_cast<std::size_t>(row_size));
  for (int64_t y = 0; y < out_height; ++y) {
    const auto at = static_cast<std::size_t>(y * down.stride);
    const T* from = &columns[static_cast<std::size_t>((down.first[static_cast<std::size_t>(y)] - first_row) * row_size)];
    if constexpr (std::is_same_v<T, std::uint8_t>) {
      std::fill(sums.begin(), sums.end(), Sum{1} << (ResampleTaps::precision_bits - 1));
    } else {
      std::fill(sums.begin(), sums.end(), Sum{0});
    }
    for (int64_t i = 0; i < down.count[static_cast<std::size_t>(y)]; ++i) {
      const T* source = from + i * row_size;
      if constexpr (std::is_same_v<T, std::uint8_t>) {
        const int32_t w = down.fixed[at + static_cast<std::size_t>(i)];
        for (int64_t j = 0; j < row_size; ++j) sums[static_cast<std::size_t>(j)] += static_cast<int32_t>(source[j]) * w;
      } else {
        const double w = down.weights[at + static_cast<std::size_t>(i)];
        for (int64_t j = 0; j < row_size; ++j) sums[static_cast<std::size_t>(j)] += static_cast<double>(source[j]) * w;
      }
    }
    for (int64_t x = 0; x < out_width; ++x) {
      for (int64_t k = 0; k < c; ++k) {
        const Sum sum = sums[static_cast<std::size_t>(x * c + k)];
        T& to = out[k * plane + y * out_width + x];
        if constexpr (std::is_same_v<T, std::uint8_t>) {
          to = static_cast<std::uint8_t>(std::clamp(sum >> ResampleTaps::precision_bits, 0, 255));
        } else {
          to = static_cast<T>(sum);
        }
      }
    }
  }
}

}  // namespace batchpipe::detail
