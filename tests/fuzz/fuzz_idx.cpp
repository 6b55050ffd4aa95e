// libFuzzer target: bp::io::read_idx on arbitrary bytes, as a plain file and, when the bytes
// start with gzip's magic number, as a .gz file.
#include "fuzz_input.hpp"

#include <batchpipe/io/idx.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto plain = batchpipe::fuzz::input_file(".idx");
  static const auto gzip = batchpipe::fuzz::input_file(".idx.gz");
  const bool gzipped = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  return batchpipe::fuzz::read_input(data, size, gzipped ? gzip : plain,
                                     [](const auto& path) { (void)batchpipe::io::read_idx(path); });
}
