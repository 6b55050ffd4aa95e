// A program that uses batchpipe the way an application does; each folder beside this file
// builds it through one way of consuming the library. It never mentions LibTorch in CMake.
#include <batchpipe/batchpipe.hpp>

#include <ATen/ops/arange.h>

#include <iostream>

namespace {

struct SumBatch : bp::Batch<SumBatch> {
  MODEL(total)() { return 0.0; }
  ACTION(scale)(double factor) { (*this)["x"] = get("x") * factor; }
  ACTION(add_up, .model = "total", .singleton = true)(double& total) {
    total += get("x").sum().item<double>();
  }
};

}  // namespace

int main() {
  bp::Dataset<SumBatch> dataset(100, {{"x", at::arange(100, at::kDouble)}});
  const auto stats =
      dataset.pipeline().scale(2.0).add_up().run({.batch_size = 16, .shuffle = 1, .prefetch = 2});
  const double total = *SumBatch::models().get<double>("total");
  std::cout << "batchpipe " << bp::version << ": " << stats.batches << " batches, total " << total << '\n';
  return stats.batches == 7 && total == 9900.0 ? 0 : 1;
}
