// libFuzzer target: bp::io::read_csv on arbitrary bytes, asking for the columns "a" and "b", so
// that the fuzzer can reach the number parsing as well as the header checks.
#include "fuzz_input.hpp"

#include <batchpipe/io/csv.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto path = batchpipe::fuzz::input_file(".csv");
  return batchpipe::fuzz::read_input(data, size, path, [](const auto& file) {
    (void)batchpipe::io::read_csv(file, {"a", "b"});
  });
}
