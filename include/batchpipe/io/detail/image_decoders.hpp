#pragma once
// The image decoders behind io/image.hpp, each decoding a file's bytes (read once) straight into
// a uint8 tensor [height, width, channels]: JPEG through libjpeg-turbo's TurboJPEG API (scaled in
// the DCT when a smaller image is enough), PNG through libspng (8 and 16 bits, grey, grey and
// alpha, RGB, RGBA, palette), every other format through stb. A decoder that the build did not
// find (CMake defines BATCHPIPE_NO_TURBOJPEG / BATCHPIPE_NO_SPNG) leaves its format to stb.
// Every size a header announces is checked against what the file can hold before anything is
// allocated.

#include <batchpipe/core/error.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <stb/stb_image.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#if !defined(BATCHPIPE_NO_TURBOJPEG) && __has_include(<turbojpeg.h>)
#define BATCHPIPE_HAS_TURBOJPEG 1
#include <turbojpeg.h>
#else
#define BATCHPIPE_HAS_TURBOJPEG 0
#endif
#if !defined(BATCHPIPE_NO_SPNG) && __has_include(<spng.h>)
#define BATCHPIPE_HAS_SPNG 1
#include <spng.h>
#else
#define BATCHPIPE_HAS_SPNG 0
#endif

namespace batchpipe::io::detail {

/// The most pixel bytes an image file of `file_size` bytes can hold, with room to spare: the
/// formats compress at most about 11000 to 1 (GIF's LZW: up to 4093 pixels per 12-bit code,
/// decoded to 4 bytes each; deflate in PNG: 1032 to 1; JPEG: about 1000; run lengths: 128).
constexpr std::uint64_t image_decoded_limit(std::uint64_t file_size) { return (file_size + 1) * 16384; }

/// An image whose header announces more pixels than its file can hold is an error before any
/// decoder allocates them: a 50-byte header may announce gigabytes.
inline void check_image_size(const std::filesystem::path& name, std::uint64_t file_size, std::uint64_t width,
                             std::uint64_t height, std::uint64_t channels) {
  if (width == 0 || height == 0) {
    throw FileError(name, "cannot decode image: its header announces " + std::to_string(width) + "x" +
                              std::to_string(height) + " pixels");
  }
  if (width > (std::uint64_t{1} << 24) || height > (std::uint64_t{1} << 24) ||
      width * height * channels > image_decoded_limit(file_size)) {
    throw FileError(name, "cannot decode image: its header announces " + std::to_string(width) + "x" +
                              std::to_string(height) + " pixels, more than a file of " +
                              std::to_string(file_size) + " bytes can hold");
  }
}

/// stb grows its PNG buffer to each chunk's announced length before it reads the chunk, so a
/// PNG's chunks are walked first: none may announce more bytes than the file has left.
inline void check_png_chunks(std::span<const std::uint8_t> bytes, const std::filesystem::path& name) {
  std::uint64_t offset = 8;
  while (offset + 8 <= bytes.size()) {
    const std::uint8_t* header = bytes.data() + offset;  // length (big-endian) and type
    const std::uint64_t length = (std::uint64_t{header[0]} << 24) | (std::uint64_t{header[1]} << 16) |
                                 (std::uint64_t{header[2]} << 8) | header[3];
    offset += 8;
    if (length + 4 > bytes.size() - offset) {  // the data and its CRC
      throw FileError(name, "cannot decode image: a PNG chunk announces " + std::to_string(length) +
                                " bytes, the file has " + std::to_string(bytes.size() - offset) + " left");
    }
    if (std::memcmp(header + 4, "IEND", 4) == 0) return;  // what follows is not the image's
    offset += length + 4;
  }
}

inline bool is_png(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= 8 && std::memcmp(bytes.data(), "\x89PNG\r\n\x1a\n", 8) == 0;
}
inline bool is_jpeg(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
}

/// A grey value from red, green and blue as PIL's "L" conversion computes it (ITU-R 601-2 luma,
/// rounded): a colour image asked for in one channel.
inline std::uint8_t luma(std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  return static_cast<std::uint8_t>((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

/// `pixels` pixels of `from` interleaved channels (1: grey, 2: grey and alpha, 3: RGB, 4: RGBA)
/// into `to` channels of `out`: 1 and 2 take the luma (the grey of a grey image), 3 drops the
/// alpha, 4 adds an opaque one where there is none.
inline void convert_channels(const std::uint8_t* in, int from, std::uint8_t* out, int to,
                             std::size_t pixels) {
  for (std::size_t p = 0; p < pixels; ++p, in += from, out += to) {
    const bool grey = from <= 2;
    const std::uint8_t r = in[0], g = grey ? in[0] : in[1], b = grey ? in[0] : in[2];
    const std::uint8_t alpha = from == 2 ? in[1] : from == 4 ? in[3] : 255;
    if (to <= 2) {
      out[0] = grey ? r : luma(r, g, b);
      if (to == 2) out[1] = alpha;
    } else {
      out[0] = r;
      out[1] = g;
      out[2] = b;
      if (to == 4) out[3] = alpha;
    }
  }
}

/// The pixels of an image [height, width, channels], to decode into.
inline at::Tensor pixels_of(int64_t height, int64_t width, int64_t channels) {
  return at::empty({height, width, channels}, at::kByte);
}

/// `pixels` [height, width, from] with `to` channels instead (convert_channels): the same tensor
/// when they agree.
inline at::Tensor with_channels(at::Tensor pixels, int to) {
  const auto height = pixels.size(0), width = pixels.size(1);
  const int from = static_cast<int>(pixels.size(2));
  if (from == to) return pixels;
  at::Tensor converted = pixels_of(height, width, to);
  convert_channels(pixels.data_ptr<std::uint8_t>(), from, converted.data_ptr<std::uint8_t>(), to,
                   static_cast<std::size_t>(height * width));
  return converted;
}

#if BATCHPIPE_HAS_TURBOJPEG
/// A TurboJPEG decompressor per thread: made once, reused for every file the thread decodes.
inline tjhandle turbojpeg_decompressor() {
  struct Handle {
    tjhandle handle = tjInitDecompress();
    ~Handle() {
      if (handle) tjDestroy(handle);
    }
  };
  thread_local Handle decompressor;
  if (!decompressor.handle)
    throw Error("cannot start libjpeg-turbo's decompressor: " + std::string(tjGetErrorStr2(nullptr)));
  return decompressor.handle;
}

/// The smallest of libjpeg-turbo's fast DCT scales (1/8, 1/4, 1/2, 1) at which a width x height
/// JPEG is still at least min_width x min_height (the full size when none is).
inline tjscalingfactor jpeg_scale_for(int width, int height, int64_t min_width, int64_t min_height) {
  int count = 0;
  const tjscalingfactor* factors = tjGetScalingFactors(&count);
  tjscalingfactor best{1, 1};
  if (min_width <= 0 && min_height <= 0) return best;  // nothing asked: the full size
  int64_t best_area = int64_t{width} * height;
  for (int i = 0; i < count; ++i) {
    const tjscalingfactor f = factors[i];
    // Enlarging: never. 3/8, 5/8, 3/4 and 7/8 take libjpeg-turbo's scalar IDCT, slower than the
    // full size's SIMD one (measured on W3's photographs: 2500 images/s against 3300).
    if (f.num != 1) continue;
    const int64_t w = TJSCALED(width, f), h = TJSCALED(height, f);
    if (w >= min_width && h >= min_height && w * h < best_area) {
      best = f;
      best_area = w * h;
    }
  }
  return best;
}

/// A JPEG's pixels [height, width, channels] (channels 0: the file's own, 1 or 3), decoded at
/// the smallest DCT scale still at least min_width x min_height. A truncated or corrupt file (a
/// warning of libjpeg-turbo's included: the pixels would be partly grey) and CMYK are errors.
inline at::Tensor decode_jpeg(std::span<const std::uint8_t> bytes, const std::filesystem::path& name,
                              int channels, int64_t min_width, int64_t min_height) {
  tjhandle handle = turbojpeg_decompressor();
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(handle, bytes.data(), static_cast<unsigned long>(bytes.size()), &width, &height,
                          &subsampling, &colorspace) != 0) {
    throw FileError(name, "cannot decode image: not a valid JPEG: " + std::string(tjGetErrorStr2(handle)));
  }
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    throw FileError(name,
                    "cannot decode image: a CMYK JPEG (batchpipe decodes grey and colour JPEGs; "
                    "convert it to RGB, e.g. `convert in.jpg -colorspace sRGB out.jpg`)");
  }
  const bool grey = colorspace == TJCS_GRAY;
  const int c = channels ? channels : grey ? 1 : 3;
  const tjscalingfactor scale = jpeg_scale_for(width, height, min_width, min_height);
  const int w = TJSCALED(width, scale), h = TJSCALED(height, scale);
  // A progressive JPEG keeps every coefficient of the full-size image (2 bytes per sample, 3
  // samples per pixel) besides the pixels: 8 bytes per pixel bound both.
  check_image_size(name, bytes.size(), static_cast<std::uint64_t>(width), static_cast<std::uint64_t>(height),
                   8);
  check_image_size(name, bytes.size(), static_cast<std::uint64_t>(w), static_cast<std::uint64_t>(h),
                   static_cast<std::uint64_t>(c));
  // Grey from colour is the luma of the RGB pixels, as for every other format (libjpeg's own
  // grey is its Y channel, one step off here and there).
  const int decoded = c == 1 && !grey ? 3 : c;
  const int format = decoded == 1 ? TJPF_GRAY : decoded == 3 ? TJPF_RGB : TJPF_RGBA;
  at::Tensor pixels = pixels_of(h, w, decoded);
  if (tjDecompress2(handle, bytes.data(), static_cast<unsigned long>(bytes.size()),
                    pixels.data_ptr<std::uint8_t>(), w, 0, h, format, TJFLAG_STOPONWARNING) != 0) {
    throw FileError(
        name, "cannot decode image: a corrupt or truncated JPEG: " + std::string(tjGetErrorStr2(handle)));
  }
  return with_channels(std::move(pixels), c);
}
#endif

#if BATCHPIPE_HAS_SPNG
/// A PNG's pixels [height, width, channels] (channels 0: the file's own: 1 grey, 2 grey and
/// alpha, 3 colour, 4 colour and alpha; a tRNS chunk counts as alpha), 16 bits taken to 8 (the
/// high byte), palettes expanded.
inline at::Tensor decode_png(std::span<const std::uint8_t> bytes, const std::filesystem::path& name,
                             int channels) {
  std::unique_ptr<spng_ctx, void (*)(spng_ctx*)> context(spng_ctx_new(0), spng_ctx_free);
  if (!context) throw Error("cannot start libspng's decoder");
  spng_ctx* png = context.get();
  check_png_chunks(bytes, name);
  const auto fail = [&](const char* what, int code) {
    throw FileError(name, std::string("cannot decode image: ") + what + ": " + spng_strerror(code));
  };
  // No chunk may be larger than the file; what spng keeps of the ancillary ones (text inflated
  // from zTXt, say) may take 1 MiB more.
  spng_set_chunk_limits(png, bytes.size(), bytes.size() + (std::size_t{1} << 20));
  if (int code = spng_set_png_buffer(png, bytes.data(), bytes.size())) fail("not a valid PNG", code);
  spng_ihdr header{};
  if (int code = spng_get_ihdr(png, &header)) fail("not a valid PNG", code);
  spng_trns transparency{};
  const int trns = spng_get_trns(png, &transparency);
  if (trns != 0 && trns != SPNG_ECHUNKAVAIL) fail("not a valid PNG", trns);
  const bool has_alpha = header.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ||
                         header.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA || trns == 0;
  const bool grey =
      header.color_type == SPNG_COLOR_TYPE_GRAYSCALE || header.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
  const int own = (grey ? 1 : 3) + (has_alpha ? 1 : 0);
  const int c = channels ? channels : own;
  // What spng 0.7 decodes to: G8 for grey of at most 8 bits without alpha, else RGB8 or RGBA8
  // (every colour type, depth and palette); one more pass converts where the asked channels
  // differ (the luma of a grey pixel in RGB is its grey).
  const int decoded = grey && header.bit_depth <= 8 && !has_alpha && c == 1 ? 1 : (c == 2 || c == 4 ? 4 : 3);
  const int format = decoded == 1 ? SPNG_FMT_G8 : decoded == 3 ? SPNG_FMT_RGB8 : SPNG_FMT_RGBA8;
  check_image_size(name, bytes.size(), header.width, header.height, static_cast<std::uint64_t>(decoded));
  std::size_t length = 0;
  if (int code = spng_decoded_image_size(png, format, &length)) fail("not a valid PNG", code);
  const auto height = static_cast<int64_t>(header.height), width = static_cast<int64_t>(header.width);
  at::Tensor pixels = pixels_of(height, width, decoded);
  if (int code = spng_decode_image(png, pixels.data_ptr<std::uint8_t>(), length, format, SPNG_DECODE_TRNS))
    fail("a corrupt or truncated PNG", code);
  return with_channels(std::move(pixels), c);
}
#endif

/// Any other format (BMP, GIF, TGA, PNM, PSD, HDR; PNG and JPEG where their decoders are
/// missing) through stb.
inline at::Tensor decode_with_stb(std::span<const std::uint8_t> bytes, const std::filesystem::path& name,
                                  int channels) {
  if (bytes.size() > static_cast<std::size_t>(INT32_MAX))
    throw FileError(name, "cannot decode image: over 2 GiB");
  const int size = static_cast<int>(bytes.size());
  int width = 0, height = 0, in_file = 0;
  if (!stbi_info_from_memory(bytes.data(), size, &width, &height, &in_file)) {
    throw FileError(name, std::string("cannot decode image: ") + stbi_failure_reason());
  }
  const int c = channels ? channels : in_file;
  // A top-down BMP announces a negative height (stb's info passes it on; its decode does not).
  const auto magnitude = [](int v) {
    return static_cast<std::uint64_t>(v < 0 ? -static_cast<int64_t>(v) : v);
  };
  check_image_size(name, bytes.size(), magnitude(width), magnitude(height),
                   static_cast<std::uint64_t>(std::max(c, in_file)));
  if (is_png(bytes)) check_png_chunks(bytes, name);
  if (bytes[0] == 'P' && stbi_is_16_bit_from_memory(bytes.data(), size)) {
    // stb 2.27 (Debian's) reads 16-bit PNM samples in the wrong byte order: wrong pixels, silently.
    throw FileError(name, "cannot decode image: a 16-bit PNM (maxval above 255) is not supported");
  }
  // Grey from colour is the luma of the RGB pixels, as for every other format.
  const int decoded_channels = c == 1 && in_file >= 3 ? 3 : c;
  std::unique_ptr<unsigned char, void (*)(void*)> decoded(
      stbi_load_from_memory(bytes.data(), size, &width, &height, &in_file, decoded_channels),
      stbi_image_free);
  if (!decoded) throw FileError(name, std::string("cannot decode image: ") + stbi_failure_reason());
  at::Tensor pixels = pixels_of(height, width, decoded_channels);
  std::memcpy(pixels.data_ptr<std::uint8_t>(), decoded.get(), static_cast<std::size_t>(pixels.numel()));
  return with_channels(std::move(pixels), c);
}

}  // namespace batchpipe::io::detail
