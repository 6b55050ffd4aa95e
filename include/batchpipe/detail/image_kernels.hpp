#pragma once
// One-pass CPU kernels for ImagesBatch's normalize, flip and crop on contiguous tensors: each
// reads its input once and writes its output once, where the tensor-operation versions make
// three to five passes and as many temporaries (a padded copy, two gathers, a flipped copy).
// flip and crop move data and give exactly what the tensor operations give; normalize computes
// the same float operations in the same order (LibTorch may turn a division by a scalar into a
// multiplication, so the two paths can differ in the last bit). Which path a batch takes does
// not depend on prefetch or threads, so a seed still gives one result. Other devices and
// layouts take the tensor operations.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/buffer_pool.hpp>

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>

namespace batchpipe::detail {

/// True when the one-pass kernels apply to `x`: items of at least one dimension each, on the CPU,
/// contiguous, not empty.
inline bool one_pass_applies(const at::Tensor& x) {
  return x.dim() >= 2 && x.device().is_cpu() && x.is_contiguous() && x.numel() > 0;
}

/// `(x * scale - mean) / std` of uint8 pixels into a new float tensor, through a table of the
/// 256 results (each computed as the tensor operations do: multiply, subtract, divide).
inline at::Tensor normalize_uint8(const at::Tensor& x, float mean, float std, float scale) {
  std::array<float, 256> table{};
  for (int v = 0; v < 256; ++v)
    table[static_cast<std::size_t>(v)] = (static_cast<float>(v) * scale - mean) / std;
  at::Tensor out = BufferPool::empty(x.sizes(), x.options().dtype(at::kFloat));
  const auto* in = x.data_ptr<std::uint8_t>();
  auto* o = out.data_ptr<float>();
  const auto n = static_cast<std::size_t>(x.numel());
  for (std::size_t i = 0; i < n; ++i) o[i] = table[in[i]];
  return out;
}

/// Copies `rows` rows of `width` elements of `Size` bytes, each row reversed when `reverse` is
/// set. The size is a constant, so that each element's memcpy compiles to one move.
template <std::size_t Size>
void copy_rows(const unsigned char* in, unsigned char* out, int64_t rows, int64_t width, bool reverse) {
  const auto row_bytes = static_cast<std::size_t>(width) * Size;
  if (!reverse) {
    std::memcpy(out, in, static_cast<std::size_t>(rows) * row_bytes);
    return;
  }
  for (int64_t r = 0; r < rows; ++r, in += row_bytes, out += row_bytes) {
    for (std::size_t c = 0, last = row_bytes - Size; c < row_bytes; c += Size)
      std::memcpy(out + c, in + (last - c), Size);
  }
}

/// The rows of `x` [items, ..., width] of each item whose flag is set, reversed (left-right).
inline at::Tensor flip_items(const at::Tensor& x, const bool* flipped) {
  at::Tensor out = BufferPool::empty(x.sizes(), x.options());
  if (x.numel() == 0) return out;
  const auto items = x.size(0);
  const auto width = x.size(-1);
  const auto rows_per_item = items ? x.numel() / (items * width) : 0;
  const auto item_bytes =
      static_cast<std::size_t>(rows_per_item * width) * static_cast<std::size_t>(x.element_size());
  const auto* in = static_cast<const unsigned char*>(x.data_ptr());
  auto* o = static_cast<unsigned char*>(out.data_ptr());
  const auto flip_all = [&](auto copy) {
    for (int64_t i = 0; i < items; ++i) {
      const auto offset = static_cast<std::size_t>(i) * item_bytes;
      copy(in + offset, o + offset, rows_per_item, width, flipped[i]);
    }
  };
  switch (x.element_size()) {  // LibTorch's element sizes
    case 1:
      flip_all(copy_rows<1>);
      break;
    case 2:
      flip_all(copy_rows<2>);
      break;
    case 4:
      flip_all(copy_rows<4>);
      break;
    case 8:
      flip_all(copy_rows<8>);
      break;
    case 16:
      flip_all(copy_rows<16>);
      break;
    default:
      throw Error("flip: elements of " + std::to_string(x.element_size()) + " bytes (" +
                  std::string(x.dtype().name()) + ") are not supported");
  }
  return out;
}

/// Each item of `x` [items, ..., H, W] cut to [height, width] at its corner (y0[i], x0[i]) of
/// the image padded with zeros by `padding` on every side, without making the padded copy.
inline at::Tensor crop_items(const at::Tensor& x, int64_t height, int64_t width, int64_t padding,
                             const int64_t* y0, const int64_t* x0) {
  auto out_shape = x.sizes().vec();
  const int64_t in_h = out_shape[out_shape.size() - 2], in_w = out_shape.back();
  out_shape[out_shape.size() - 2] = height;
  out_shape.back() = width;
  at::Tensor out = BufferPool::empty(out_shape, x.options());
  const auto items = x.size(0);
  const auto planes_per_item = items ? x.numel() / (items * in_h * in_w) : 0;
  const auto element = static_cast<std::size_t>(x.element_size());
  const auto* in = static_cast<const unsigned char*>(x.data_ptr());
  auto* o = static_cast<unsigned char*>(out.data_ptr());
  for (int64_t i = 0; i < items; ++i) {
    // The columns of the output row that fall inside the image, and where they start in it.
    const int64_t first_x = x0[i] - padding;  // the image column under output column 0
    const int64_t from = std::clamp<int64_t>(-first_x, 0, width);
    const int64_t to = std::clamp<int64_t>(in_w - first_x, from, width);
    for (int64_t p = 0; p < planes_per_item; ++p) {
      const int64_t plane = i * planes_per_item + p;
      const auto* in_plane = in + static_cast<std::size_t>(plane * in_h * in_w) * element;
      auto* out_plane = o + static_cast<std::size_t>(plane * height * width) * element;
      for (int64_t y = 0; y < height; ++y) {
        auto* row = out_plane + static_cast<std::size_t>(y * width) * element;
        const int64_t source_y = y0[i] - padding + y;
        if (source_y < 0 || source_y >= in_h || from == to) {
          std::memset(row, 0, static_cast<std::size_t>(width) * element);
          continue;
        }
        std::memset(row, 0, static_cast<std::size_t>(from) * element);
        std::memcpy(row + static_cast<std::size_t>(from) * element,
                    in_plane + static_cast<std::size_t>(source_y * in_w + first_x + from) * element,
                    static_cast<std::size_t>(to - from) * element);
        std::memset(row + static_cast<std::size_t>(to) * element, 0,
                    static_cast<std::size_t>(width - to) * element);
      }
    }
  }
  return out;
}

}  // namespace batchpipe::detail
