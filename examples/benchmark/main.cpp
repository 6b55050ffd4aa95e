// The benchmark workloads of the design brief, on batchpipe:
//   W0 overhead: no-op actions on a large index: cost per batch and per action dispatch.
//   W1 prep:     normalize, flip (p = 0.5), random crop 28x28 after padding 2; one epoch of
//                Fashion-MNIST (60,000 items), batch 256, shuffled.
//   W2 train:    W1, then an MLP 784-256-10 (ReLU), Adam, lr 1e-3, cross-entropy; one epoch.
// Prints one line per workload and prefetch value, in items/s (W0: microseconds).

#include "../common/example.hpp"

#include <batchpipe/batchpipe.hpp>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

namespace {

using Model = bp::TorchModel<torch::nn::Sequential, torch::optim::Adam>;

struct BenchBatch : bp::ImagesBatchBase<BenchBatch> {
  ACTION(nothing)() {}
  MODEL(mlp)() {
    torch::manual_seed(0);
    torch::nn::Sequential net(torch::nn::Flatten(), torch::nn::Linear(784, 256), torch::nn::ReLU(),
                              torch::nn::Linear(256, 10));
    return Model{net, torch::optim::Adam(net->parameters(), torch::optim::AdamOptions(1e-3))};
  }
  ACTION(train, .model = "mlp", .singleton = true)(Model& m) {
    bp::train_step(m.module, m.optimizer, get("images"), get("labels"));
  }
};

// The best of `repeats` runs, in seconds.
template <class F>
double best_of(int repeats, F&& run) {
  double best = 1e300;
  for (int i = 0; i < repeats; ++i) best = std::min(best, run());
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path data = "/usr/share/datasets/fashion-mnist";
  std::size_t threads = 0;
  int repeats = 3;
  CLI::App app{"batchpipe benchmark workloads W0, W1, W2"};
  app.add_option("--data", data, "folder of the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--threads", threads, "thread budget (0: all cores)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--repeats", repeats, "runs per measurement; the best is kept")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  if (const auto exit_code = example::parse_command_line(app, argc, argv)) return *exit_code;
  auto check = [&] {
    example::check_data_folder(data, {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"});
  };
  return example::run("benchmark", check, [&] {
    // W0: 1,000,000 items, batches of 256, 100 no-op actions (enough to rise above the noise).
    bp::Dataset<BenchBatch> big(1'000'000);
    auto empty = big.pipeline();
    auto hundred = empty;
    for (int i = 0; i < 100; ++i) hundred = hundred.nothing();
    for (std::size_t prefetch : {0, 2}) {
      const bp::RunOptions options{.batch_size = 256, .shuffle = 1, .prefetch = prefetch, .threads = threads};
      const double base = best_of(repeats, [&] { return empty.run(options).seconds; });
      const double with_actions = best_of(repeats, [&] { return hundred.run(options).seconds; });
      const double batches = 1'000'000.0 / 256;
      std::printf("W0 prefetch %zu: %.2f us per batch, %.3f us per action dispatch\n", prefetch,
                  1e6 * base / batches, 1e6 * (with_actions - base) / (batches * 100));
    }

    auto images = bp::io::read_idx(data / "train-images-idx3-ubyte.gz");
    auto labels = bp::io::read_idx(data / "train-labels-idx1-ubyte.gz").to(torch::kLong);
    bp::Dataset<BenchBatch> fashion(60000, {{"images", images}, {"labels", labels}});
    auto prep = fashion.pipeline().normalize(0.2860f, 0.3530f, 1 / 255.f).flip(0.5).crop(28, 28, 2);
    auto train = prep.train();
    for (std::size_t prefetch : {0, 2}) {
      const bp::RunOptions options{.batch_size = 256, .shuffle = 7, .prefetch = prefetch, .threads = threads};
      const double w1 = best_of(repeats, [&] { return prep.run(options).seconds; });
      const double w2 = best_of(repeats, [&] { return train.run(options).seconds; });
      std::printf("W1 prefetch %zu: %.0f items/s\n", prefetch, 60000 / w1);
      std::printf("W2 prefetch %zu: %.0f items/s\n", prefetch, 60000 / w2);
    }
  });
}
