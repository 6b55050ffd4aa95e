// A small hyper-parameter grid on Fashion-MNIST: the MLP's hidden size x Adam's learning rate.
// Each point of the grid is a config laid over a base config; each gets a training pipeline with
// its own model instance (init_model) and an evaluation pipeline that uses that instance. The
// points run one after another, or side by side (--side-by-side); the program ends with a table
// of the points and their test accuracy, and the JSON of the best point (--best FILE saves it).
//
// `research --help` lists the flags. Exit codes: examples/common/example.hpp.

#include "../common/example.hpp"
#include "../common/fashion.hpp"

#include <batchpipe/batchpipe.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace fashion;

struct Settings {
  std::filesystem::path data = "/usr/share/datasets/fashion-mnist";
  std::vector<int64_t> hidden{64, 256};
  std::vector<double> learning_rates{1e-3, 3e-3};
  std::size_t epochs = 1;
  std::size_t items = 0;  // training items used (0: all 60,000)
  std::size_t batch_size = 128;
  std::uint64_t seed = 42;
  bool side_by_side = false;
  std::filesystem::path best;
};

struct Point {
  bp::Config config;
  double accuracy = 0;
};

/// Trains one point's model on `train_data` and measures it on `test_data`.
double train_and_evaluate(const Settings& s, const bp::Config& config,
                          const bp::Dataset<FashionBatch>& train_data,
                          const bp::Dataset<FashionBatch>& test_data) {
  const auto normalized = [](const bp::Dataset<FashionBatch>& data) {
    return data.pipeline().normalize(0.2860f, 0.3530f, 1 / 255.f);
  };
  const auto training = normalized(train_data)
                            .flip(0.5)
                            .init_model("classifier", config.at("model"))
                            .init_variable("loss", 0.0)
                            .train();
  training.run({.batch_size = s.batch_size, .n_epochs = s.epochs, .shuffle = s.seed, .prefetch = 2});
  training.model<Model>("classifier")->module->eval();
  const auto evaluation = normalized(test_data)
                              .with_model(training.model_instance("classifier"))
                              .init_variable("accuracy", bp::Accuracy{})
                              .evaluate();
  evaluation.run({.batch_size = 1000, .prefetch = 2});
  return evaluation.variables().value<bp::Accuracy>("accuracy").value();
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{
      "A grid over the Fashion-MNIST MLP's hidden size and learning rate, one model instance per point"};
  app.add_option("--data", s.data, "folder of the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--hidden", s.hidden, "hidden sizes to try")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  app.add_option("--lr", s.learning_rates, "learning rates to try")
      ->check(CLI::Range(1e-9, 10.0))
      ->capture_default_str();
  app.add_option("--epochs", s.epochs, "epochs per point")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--items", s.items, "training items per point (0: all)")
      ->check(CLI::Range(0, 60000))
      ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "items per batch")
      ->check(CLI::Range(1, 60000))
      ->capture_default_str();
  app.add_option("--seed", s.seed, "seed of the shuffle, the augmentation and the weights")
      ->capture_default_str();
  app.add_flag("--side-by-side", s.side_by_side, "train the points at once, one thread each");
  app.add_option("--best", s.best, "write the best point's config to this JSON file");
  if (const auto exit_code = example::parse_command_line(app, argc, argv)) return *exit_code;

  auto check = [&] {
    example::check_data_folder(s.data, {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"});
    example::check_output_file("--best", s.best);
  };
  return example::run("research", check, [&] {
    auto train_data = load_split(s.data, "train");
    const auto test_data = load_split(s.data, "t10k");
    if (s.items != 0) {
      example::check_items("--items", s.items, static_cast<std::int64_t>(train_data.size()));
      std::vector<std::size_t> first(s.items);
      std::iota(first.begin(), first.end(), std::size_t{0});
      train_data = train_data.subset(first);
    }

    // The grid: each point is the base config with its own model settings laid over it.
    bp::Config base;
    base.set("model", {{"network", "mlp"}, {"device", "cpu"}, {"seed", s.seed}});
    std::vector<Point> points;
    for (const int64_t hidden : s.hidden) {
      for (const double lr : s.learning_rates) {
        bp::Config point;
        point.set("model.hidden", hidden).set("model.lr", lr);
        points.push_back({base.merged(point)});
      }
    }

    if (s.side_by_side) {
      std::vector<std::thread> threads;
      for (auto& point : points) {
        threads.emplace_back(
            [&] { point.accuracy = train_and_evaluate(s, point.config, train_data, test_data); });
      }
      for (auto& thread : threads) thread.join();
    } else {
      for (auto& point : points) point.accuracy = train_and_evaluate(s, point.config, train_data, test_data);
    }

    std::printf("%8s %10s %10s\n", "hidden", "lr", "accuracy");
    const Point* best = &points.front();
    for (const auto& point : points) {
      std::printf("%8lld %10g %10.4f\n", static_cast<long long>(point.config.get<int64_t>("model.hidden")),
                  point.config.get<double>("model.lr"), point.accuracy);
      if (point.accuracy > best->accuracy) best = &point;
    }
    bp::Config result = best->config;
    result.set("test_accuracy", best->accuracy);
    std::cout << "best: " << result.dump(-1) << std::endl;
    if (!s.best.empty()) result.save(s.best);
  });
}
