// libFuzzer target: bp::io::read_image on arbitrary bytes (every format stb decodes), keeping
// the file's channels and converting to three.
#include "fuzz_input.hpp"

#include <batchpipe/io/image.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto path = batchpipe::fuzz::input_file(".img");
  return batchpipe::fuzz::read_input(data, size, path, [](const auto& file) {
    (void)batchpipe::io::read_image(file);
    (void)batchpipe::io::read_image(file, 3);
  });
}
