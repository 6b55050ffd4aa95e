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
  if (name == "bilinear")
    filter = ResampleFilter::bilinear;
  else if (name == "box" || name == "area")
    filter = ResampleFilter::box;
  else if (name == "bicubic")
    filter = ResampleFilter::bicubic;
  else
    return false;
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

/// The sum type of a pixel type: Pillow's 32-bit fixed point for uint8, double for the rest.
template <class T>
using ResampleSum = std::conditional_t<std::is_same_v<T, std::uint8_t>, int32_t, double>;

/// A sum's first value: half of the fixed point's unit for uint8 (Pillow's rounding), else 0.
template <class T>
constexpr ResampleSum<T> resample_start() {
  if constexpr (std::is_same_v<T, std::uint8_t>) return int32_t{1} << (ResampleTaps::precision_bits - 1);
  return 0;
}

/// A finished sum as a pixel: shifted down and clipped to 0-255 for uint8 (Pillow's clip8).
template <class T>
T resample_finish(ResampleSum<T> sum) {
  if constexpr (std::is_same_v<T, std::uint8_t>) {
    return static_cast<std::uint8_t>(std::clamp(sum >> ResampleTaps::precision_bits, 0, 255));
  } else {
    return static_cast<T>(sum);
  }
}

/// One output value from `count` source values `step` apart and their weights: fixed point with
/// Pillow's rounding and clipping for uint8, floating point for the rest.
template <class T>
T resample_one(const T* in, int64_t step, const ResampleTaps& taps, int64_t o) {
  const auto at = static_cast<std::size_t>(o * taps.stride);
  const int64_t count = taps.count[static_cast<std::size_t>(o)];
  ResampleSum<T> sum = resample_start<T>();
  if constexpr (std::is_same_v<T, std::uint8_t>) {
    const int32_t* w = &taps.fixed[at];
    for (int64_t i = 0; i < count; ++i) sum += static_cast<int32_t>(in[i * step]) * w[i];
  } else {
    const double* w = &taps.weights[at];
    for (int64_t i = 0; i < count; ++i) sum += static_cast<double>(in[i * step]) * w[i];
  }
  return resample_finish<T>(sum);
}

/// One row of interleaved pixels of `Channels` channels resampled across: each output pixel's
/// sums, one per channel, made together over its taps (the same sums, in the same order, as
/// resample_one makes channel by channel).
template <class T, int Channels>
void resample_row(const T* row, const ResampleTaps& taps, int64_t out_width, T* to) {
  constexpr bool fixed = std::is_same_v<T, std::uint8_t>;
  for (int64_t x = 0; x < out_width; ++x) {
    const auto at = static_cast<std::size_t>(x * taps.stride);
    const int64_t count = taps.count[static_cast<std::size_t>(x)];
    const T* from = row + taps.first[static_cast<std::size_t>(x)] * Channels;
    ResampleSum<T> sums[Channels];
    for (int k = 0; k < Channels; ++k) sums[k] = resample_start<T>();
    for (int64_t i = 0; i < count; ++i) {
      if constexpr (fixed) {
        const int32_t w = taps.fixed[at + static_cast<std::size_t>(i)];
        for (int k = 0; k < Channels; ++k) sums[k] += static_cast<int32_t>(from[i * Channels + k]) * w;
      } else {
        const double w = taps.weights[at + static_cast<std::size_t>(i)];
        for (int k = 0; k < Channels; ++k) sums[k] += static_cast<double>(from[i * Channels + k]) * w;
      }
    }
    for (int k = 0; k < Channels; ++k) to[x * Channels + k] = resample_finish<T>(sums[k]);
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

/// out[j] = the weighted sum, tap by tap, of lines[i * line_pitch + j] (j < size) with the weights
/// of output `o` of `taps`, rounded and clipped for uint8: whole lines at once, the loop compilers
/// vectorise. The sums are Pillow's, in Pillow's tap order. `sums` holds `size` elements; the
/// three arrays do not overlap (restrict: uint8 could otherwise alias the sums, and nothing would
/// be vectorised).
template <class T>
void resample_lines(const T* __restrict lines, int64_t line_pitch, int64_t size, const ResampleTaps& taps,
                    int64_t o, ResampleSum<T>* __restrict sums, T* __restrict out) {
  const auto at = static_cast<std::size_t>(o * taps.stride);
  for (int64_t j = 0; j < size; ++j) sums[j] = resample_start<T>();
  for (int64_t i = 0; i < taps.count[static_cast<std::size_t>(o)]; ++i) {
    const T* line = lines + i * line_pitch;
    if constexpr (std::is_same_v<T, std::uint8_t>) {
      const int32_t w = taps.fixed[at + static_cast<std::size_t>(i)];
      for (int64_t j = 0; j < size; ++j) sums[j] += static_cast<int32_t>(line[j]) * w;
    } else {
      const double w = taps.weights[at + static_cast<std::size_t>(i)];
      for (int64_t j = 0; j < size; ++j) sums[j] += static_cast<double>(line[j]) * w;
    }
  }
  for (int64_t j = 0; j < size; ++j) out[j] = resample_finish<T>(sums[j]);
}

/// The columns pass, pixel by pixel: `rows` source rows from `first` into `columns` (rows x
/// out_width pixels, interleaved).
template <class T>
void resample_columns_by_pixel(const InterleavedImage<T>& in, int64_t first, int64_t rows,
                               const ResampleTaps& across, int64_t out_width, T* columns) {
  const int64_t c = in.channels;
  for (int64_t y = 0; y < rows; ++y) {
    const T* row = in.data + (first + y) * in.pitch;
    T* to = columns + y * out_width * c;
    switch (c) {  // the channels known to the compiler: all of a pixel's sums at once
      case 1:
        resample_row<T, 1>(row, across, out_width, to);
        break;
      case 2:
        resample_row<T, 2>(row, across, out_width, to);
        break;
      case 3:
        resample_row<T, 3>(row, across, out_width, to);
        break;
      case 4:
        resample_row<T, 4>(row, across, out_width, to);
        break;
      default:
        for (int64_t x = 0; x < out_width; ++x) {
          const T* from = row + across.first[static_cast<std::size_t>(x)] * c;
          for (int64_t k = 0; k < c; ++k) to[x * c + k] = resample_one(from + k, c, across, x);
        }
    }
  }
}

/// The columns pass on whole columns: the source block transposed (each source column's pixels
/// contiguous), each output column summed from whole source columns (resample_lines), transposed
/// back. Two more passes over the pixels, but the sums vectorise: twice as fast with AVX2, a
/// tenth slower with SSE2 alone (a 500 x 375 photograph to 224 wide, 2026-12).
template <class T, int C>
void resample_columns_by_line(const InterleavedImage<T>& in, int64_t first, int64_t rows,
                              const ResampleTaps& across, int64_t out_width, T* columns) {
  // In strips of rows, so that a strip's transposed source and sums stay in the caches.
  constexpr int64_t strip = 32;
  const int64_t lo = across.lowest(), width = across.highest() - lo;
  std::vector<T> source(static_cast<std::size_t>(width * strip * C)),
      summed(static_cast<std::size_t>(out_width * strip * C));
  std::vector<ResampleSum<T>> sums(static_cast<std::size_t>(strip * C));
  for (int64_t y0 = 0; y0 < rows; y0 += strip) {
    const int64_t count = std::min(strip, rows - y0), line = count * C;
    for (int64_t x = 0; x < width; ++x) {  // column x of the strip: source[x * line ...]
      T* to = source.data() + x * line;
      for (int64_t y = 0; y < count; ++y) {
        const T* pixel = in.data + (first + y0 + y) * in.pitch + (lo + x) * C;
        for (int k = 0; k < C; ++k) to[y * C + k] = pixel[k];
      }
    }
    for (int64_t x = 0; x < out_width; ++x) {
      resample_lines(
          &source[static_cast<std::size_t>((across.first[static_cast<std::size_t>(x)] - lo) * line)], line,
          line, across, x, sums.data(), &summed[static_cast<std::size_t>(x * line)]);
    }
    for (int64_t y = 0; y < count; ++y) {
      T* to = columns + (y0 + y) * out_width * C;
      for (int64_t x = 0; x < out_width; ++x) {
        for (int k = 0; k < C; ++k) to[x * C + k] = summed[static_cast<std::size_t>(x * line + y * C + k)];
      }
    }
  }
}

/// Resamples the box of `in` to out_height x out_width, written planar into `out`
/// ([channels, out_height, out_width], contiguous), as Pillow does: columns first, for only the
/// rows the second pass reads, into an interleaved buffer of T (uint8: rounded and clipped, as
/// Pillow's intermediate image); then rows, each output row from whole source rows. ByLine picks
/// the columns pass (resample_columns_by_line or _by_pixel): the same values either way.
template <class T, bool ByLine>
void resample_image_as(const InterleavedImage<T>& in, const SourceBox& box, int64_t out_height,
                       int64_t out_width, ResampleFilter filter, T* out) {
  const auto across = ResampleTaps::make(in.width, box.x0, box.x1, out_width, filter);
  const auto down = ResampleTaps::make(in.height, box.y0, box.y1, out_height, filter);
  const int64_t first_row = down.lowest(), rows = down.highest() - first_row, c = in.channels;
  std::vector<T> columns(static_cast<std::size_t>(rows * out_width * c));
  if (ByLine && c == 3) {  // photographs; the transposes need the channels known to the compiler
    resample_columns_by_line<T, 3>(in, first_row, rows, across, out_width, columns.data());
  } else if (ByLine && c == 1) {
    resample_columns_by_line<T, 1>(in, first_row, rows, across, out_width, columns.data());
  } else if (ByLine && c == 4) {
    resample_columns_by_line<T, 4>(in, first_row, rows, across, out_width, columns.data());
  } else {
    resample_columns_by_pixel(in, first_row, rows, across, out_width, columns.data());
  }
  const int64_t row_size = out_width * c, plane = out_height * out_width;
  std::vector<ResampleSum<T>> sums(static_cast<std::size_t>(row_size));
  std::vector<T> row(static_cast<std::size_t>(row_size));
  for (int64_t y = 0; y < out_height; ++y) {
    const T* from =
        &columns[static_cast<std::size_t>((down.first[static_cast<std::size_t>(y)] - first_row) * row_size)];
    resample_lines(from, row_size, row_size, down, y, sums.data(), row.data());
    for (int64_t x = 0; x < out_width; ++x) {
      for (int64_t k = 0; k < c; ++k)
        out[k * plane + y * out_width + x] = row[static_cast<std::size_t>(x * c + k)];
    }
  }
}

/// The instruction sets resample_image can run on: the compiler's own target, and AVX2 where the
/// CPU has it (x86 with GCC or Clang), chosen at run time.
enum class ResampleIsa { baseline, avx2 };

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define BATCHPIPE_DETAIL_RESAMPLE_AVX2 1
/// resample_image_as compiled for AVX2 (flatten: every call inside it inlined, so compiled for
/// AVX2 too). A template: compiled only where a resize is, not in every includer.
template <class T>
[[gnu::target("avx2"), gnu::flatten]] void resample_image_avx2(const InterleavedImage<T>& in,
                                                               const SourceBox& box, int64_t out_height,
                                                               int64_t out_width, ResampleFilter filter,
                                                               T* out) {
  resample_image_as<T, true>(in, box, out_height, out_width, filter, out);
}
#endif

/// The instruction sets this CPU runs resample_image on, best first.
inline std::vector<ResampleIsa> resample_isas() {
  std::vector<ResampleIsa> isas;
#ifdef BATCHPIPE_DETAIL_RESAMPLE_AVX2
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) isas.push_back(ResampleIsa::avx2);
#endif
  isas.push_back(ResampleIsa::baseline);
  return isas;
}

/// resample_image_as on `isa` (one of resample_isas()).
template <class T>
void resample_image_on(ResampleIsa isa, const InterleavedImage<T>& in, const SourceBox& box,
                       int64_t out_height, int64_t out_width, ResampleFilter filter, T* out) {
#ifdef BATCHPIPE_DETAIL_RESAMPLE_AVX2
  if (isa == ResampleIsa::avx2) return resample_image_avx2(in, box, out_height, out_width, filter, out);
#endif
  (void)isa;
  resample_image_as<T, false>(in, box, out_height, out_width, filter, out);
}

/// Resamples the box of `in` as Pillow does (resample_image_as), on the best instruction set of
/// this CPU.
template <class T>
void resample_image(const InterleavedImage<T>& in, const SourceBox& box, int64_t out_height,
                    int64_t out_width, ResampleFilter filter, T* out) {
  static const ResampleIsa best = resample_isas().front();
  resample_image_on(best, in, box, out_height, out_width, filter, out);
}

}  // namespace batchpipe::detail
