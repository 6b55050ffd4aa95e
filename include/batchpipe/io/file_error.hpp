#pragma once
// The error every reader and writer throws: it names the file and what is wrong with it.

#include "../error.hpp"

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>

namespace batchpipe {

/// @brief A file could not be read or written: missing, truncated, malformed, mismatched.
class FileError : public Error {
 public:
  FileError(const std::filesystem::path& file, const std::string& problem)
      : Error(file.string() + ": " + problem), file_(file) {}
  const std::filesystem::path& file() const noexcept { return file_; }

 private:
  std::filesystem::path file_;
};

namespace detail {

/// A shape as text: [2, 28, 28].
inline std::string shape_string(at::IntArrayRef shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

}  // namespace detail
}  // namespace batchpipe
