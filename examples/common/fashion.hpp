// The Fashion-MNIST batch class, its model and its data, shared by examples/fashion_mnist and
// examples/research. Its training step takes a data-parallel job (a job of one rank, the
// default, is a plain step), so both include the distributed header.
#pragma once

#include <batchpipe/batchpipe.hpp>
#include <batchpipe/distributed.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace fashion {

using Model = bp::TorchModel<torch::nn::Sequential, torch::optim::Adam>;

// A small convolutional network or a multilayer perceptron (`hidden` units), for 28x28 images.
inline torch::nn::Sequential make_network(const std::string& kind, int64_t hidden = 256) {
  namespace nn = torch::nn;
  if (kind == "cnn") {
    return nn::Sequential(nn::Unflatten(nn::UnflattenOptions(1, {1, 28})),  // [n, 1, 28, 28]
                          nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)), nn::ReLU(), nn::MaxPool2d(2),
                          nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1)), nn::ReLU(), nn::MaxPool2d(2),
                          nn::Flatten(), nn::Linear(64 * 7 * 7, 128), nn::ReLU(), nn::Linear(128, 10));
  }
  return nn::Sequential(nn::Flatten(), nn::Linear(784, hidden), nn::ReLU(), nn::Linear(hidden, 10));
}

struct FashionBatch : bp::ImagesBatchBase<FashionBatch> {
  // Built on first use from the config of the pipeline's instance (init_model):
  // {"network": "mlp" or "cnn", "hidden": 256, "lr": 0.001, "device": "cpu", "seed": 42}.
  MODEL(classifier)(const bp::Config& config) {
    torch::manual_seed(config.get_or<std::uint64_t>("seed", 0));
    auto net = make_network(config.get_or("network", "mlp"), config.get_or<int64_t>("hidden", 256));
    net->to(torch::Device(config.get_or("device", "cpu")));
    return Model{net,
                 torch::optim::Adam(net->parameters(), torch::optim::AdamOptions(config.get_or("lr", 1e-3)))};
  }

  // A singleton: one step at a time, batches in order, whatever the prefetch. In a distributed
  // job (`job` with several ranks) the gradients are averaged over the ranks before each step.
  ACTION(train, .model = "classifier", .singleton = true)(Model& model, bp::Distributed job = {}) {
    const double loss = bp::train_step(job, model.module, model.optimizer, get("images"), get("labels"));
    if (size() == 0) return;  // a shard's last batch, empty when fewer items than ranks were left
    variable<double>("loss").update(
        [&](double& running) { running = running == 0 ? loss : 0.98 * running + 0.02 * loss; });
  }

  // At a batch of a new epoch, multiplies the learning rate by `factor` once per epoch passed;
  // the pipeline variable "epoch" remembers the last one seen. Before train, in one run of many
  // epochs.
  ACTION(decay_lr, .model = "classifier", .singleton = true)(Model& model, double factor) {
    variable<std::size_t>("epoch").update([&](std::size_t& seen) {
      for (; seen < epoch(); ++seen) {
        for (auto& group : model.optimizer.param_groups()) {
          auto& options = static_cast<torch::optim::AdamOptions&>(group.options());
          options.lr(options.lr() * factor);
        }
      }
    });
  }

  ACTION(evaluate, .model = "classifier")(Model& model) {
    bp::evaluate(model.module, get("images"), get("labels"), variable<bp::Accuracy>("accuracy"));
  }
};

inline bp::Dataset<FashionBatch> load_split(const std::filesystem::path& folder, const std::string& prefix) {
  const auto images_file = folder / (prefix + "-images-idx3-ubyte.gz");
  auto images = bp::io::read_idx(images_file);
  // Nothing to learn from or measure: training would "succeed" and report an accuracy of 0.
  if (images.size(0) == 0) throw bp::FileError(images_file, "holds no images");
  auto labels = bp::io::read_idx(folder / (prefix + "-labels-idx1-ubyte.gz")).to(torch::kLong);
  return bp::Dataset<FashionBatch>(static_cast<std::size_t>(images.size(0)),
                                   {{"images", images}, {"labels", labels}});
}

}  // namespace fashion
