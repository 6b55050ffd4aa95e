// The seed page's workflow in C++: a batch class with a model definition, preprocessing and
// augmentation actions, a singleton training action and an evaluation action sharing the model,
// run with prefetch. The data are generated here so the example needs nothing but the library.
//
//   quickstart [--epochs N] [--prefetch N] [--device cpu|cuda]

#include "../common/example.hpp"

#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

namespace {

constexpr int64_t n_features = 16;
constexpr int64_t n_classes = 4;

// The model descriptor: anything the actions need, here a network and its optimizer.
struct Classifier {
  torch::nn::Sequential net;
  torch::optim::Adam optimizer;
};

// What the actions report back: the training loss per batch and the test accuracy.
struct Log {
  std::vector<double> losses;  // written by the singleton training action only
  std::atomic<int64_t> correct{0};
  std::atomic<int64_t> seen{0};
};

struct ToyBatch : bp::Batch<ToyBatch> {
  inline static torch::Device device{torch::kCPU};  // set in main, before any model is built

  // Built once, on first use, and shared by train_model and evaluate_model.
  MODEL(basic_model)() {
    torch::nn::Sequential net(torch::nn::Linear(n_features, 32), torch::nn::ReLU(),
                              torch::nn::Linear(32, n_classes));
    net->to(device);
    return Classifier{net, torch::optim::Adam(net->parameters(), torch::optim::AdamOptions(1e-2))};
  }

  // Preprocessing: standardise the features.
  ACTION(normalize)(float mean, float std) { (*this)["features"] = (get("features") - mean) / std; }

  // Augmentation: a little noise, drawn from this batch's own random stream.
  ACTION(add_noise)(float scale) {
    auto& features = (*this)["features"];
    features = features + scale * torch::randn(features.sizes(), random().torch_generator());
  }

  ACTION(to_device)() {
    for (const auto& name : components()) (*this)[name] = get(name).to(device);
  }

  // One optimizer step. A singleton: steps never overlap, even with prefetch.
  ACTION(train_model, .model = "basic_model", .singleton = true)(Classifier& model, Log& log) {
    model.net->train();
    model.optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model.net->forward(get("features")), get("labels"));
    loss.backward();
    model.optimizer.step();
    log.losses.push_back(loss.item<double>());
  }

  ACTION(evaluate_model, .model = "basic_model")(Classifier& model, Log& log) {
    torch::NoGradGuard no_grad;
    auto predicted = model.net->forward(get("features")).argmax(1);
    log.correct += predicted.eq(get("labels")).sum().item<int64_t>();
    log.seen += static_cast<int64_t>(size());
  }
};

// Four clusters in 16 dimensions, one per class.
bp::Dataset<ToyBatch> make_dataset(int64_t n_items) {
  torch::manual_seed(0);
  auto centers = torch::randn({n_classes, n_features}) * 0.5;
  auto labels = torch::randint(n_classes, {n_items});
  auto features = centers.index_select(0, labels) + torch::randn({n_items, n_features}) + 3.0;
  return bp::Dataset<ToyBatch>(static_cast<std::size_t>(n_items),
                               {{"features", features}, {"labels", labels}});
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t epochs = 3, prefetch = 2;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help") {
      std::cout << "usage: quickstart [--epochs N] [--prefetch N] [--device cpu|cuda|cuda:N]\n";
      return example::exit_success;
    }
  }
  auto check = [&] {
    for (int i = 1; i < argc; i += 2) {
      const std::string flag = argv[i];
      if (i + 1 == argc) throw example::UsageError(flag + " needs a value");
      const std::string value = argv[i + 1];
      if (flag == "--epochs") {
        epochs = example::parse_count(flag, value, 0, 100000);
      } else if (flag == "--prefetch") {
        prefetch = example::parse_count(flag, value, 0, 256);
      } else if (flag == "--device") {
        ToyBatch::device = example::parse_device(value);
      } else {
        throw example::UsageError("unknown flag " + flag + " (--epochs, --prefetch, --device, --help)");
      }
    }
  };
  return example::run("quickstart", check, [&] {
    auto [train, test, validation] = make_dataset(20000).split(0.8, /*shuffle seed*/ 1);
    Log log;

    // Lazy: these lines run nothing.
    auto preprocess = train.pipeline().normalize(3.0f, 2.0f);
    auto training = (preprocess + train.pipeline().add_noise(0.1f).to_device()).train_model(log);
    auto evaluation = test.pipeline().normalize(3.0f, 2.0f).to_device().evaluate_model(log);

    for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
      log.losses.clear();
      auto stats = training.run({.batch_size = 128, .shuffle = 42 + epoch, .prefetch = prefetch});
      double mean_loss = 0;
      for (double loss : log.losses) mean_loss += loss / static_cast<double>(log.losses.size());
      std::cout << "epoch " << epoch << ": " << stats.batches << " batches, loss " << std::fixed
                << std::setprecision(4) << mean_loss << ", " << std::setprecision(0)
                << static_cast<double>(stats.items) / stats.seconds << " items/s\n";
    }

    evaluation.run({.batch_size = 512, .prefetch = prefetch});
    std::cout << "models: ";
    for (const auto& model : ToyBatch::models().list())
      std::cout << model.name << (model.built ? " (built)" : "") << ' ';
    std::cout << "\ntest_accuracy: " << std::setprecision(4)
              << static_cast<double>(log.correct) / static_cast<double>(log.seen) << '\n';
  });
}
