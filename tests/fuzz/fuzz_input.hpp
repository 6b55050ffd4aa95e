#pragma once
// What every fuzz target does with an input: the readers read files, so the input is written to
// a file of this process (named as the reader expects) and read back. A bp::Error (a FileError
// naming the file and what is wrong) is the right answer to bad input; anything else is a
// finding: a crash, a sanitizer report, another exception (a LibTorch error, std::bad_alloc) or
// an allocation over libFuzzer's -malloc_limit_mb (a reader must not allocate more than the
// file can fill).

#include <batchpipe/core/error.hpp>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace batchpipe::fuzz {

inline std::filesystem::path input_file(const std::string& extension) {
  return std::filesystem::temp_directory_path() /
         ("batchpipe-fuzz-" + std::to_string(::getpid()) + extension);
}

template <class Read>
int read_input(const std::uint8_t* data, std::size_t size, const std::filesystem::path& path, Read&& read) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    read(path);
  } catch (const Error&) {
    // Bad input, said so.
  }
  return 0;
}

}  // namespace batchpipe::fuzz
