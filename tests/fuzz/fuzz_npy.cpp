// libFuzzer target: bp::io::read_npy on arbitrary bytes.
#include "fuzz_input.hpp"

#include <batchpipe/io/npy.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto path = batchpipe::fuzz::input_file(".npy");
  return batchpipe::fuzz::read_input(data, size, path,
                                     [](const auto& file) { (void)batchpipe::io::read_npy(file); });
}
