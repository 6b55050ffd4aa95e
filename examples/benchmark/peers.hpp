#pragma once
// The peers batchpipe is measured against, doing the same work without it:
//   - a hand-written LibTorch loop: the same operations, batch-vectorised, no library;
//   - LibTorch's own torch::data DataLoader, with the augmentations as per-example transforms
//     and 2 worker threads (how LibTorch's C++ API is meant to be used);
//   - the model alone: the same training on batches normalised once up front, without
//     augmentation, in order: the ceiling for W2.
// Each returns items per second over one pass of `items` items.

#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace benchmark_peers {

inline constexpr float fashion_mean = 0.2860f;
inline constexpr float fashion_std = 0.3530f;
inline constexpr int64_t crop_padding = 2;

using Model = bp::TorchModel<torch::nn::Sequential, torch::optim::Adam>;

/// The W2 model: MLP 784-256-10 (ReLU), Adam, lr 1e-3, the same initial weights everywhere.
inline Model make_model() {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Flatten(), torch::nn::Linear(784, 256), torch::nn::ReLU(),
                            torch::nn::Linear(256, 10));
  return Model{net, torch::optim::Adam(net->parameters(), torch::optim::AdamOptions(1e-3))};
}

/// The data: uint8 images [n, 28, 28] and int64 labels [n].
struct Fashion {
  at::Tensor images;
  at::Tensor labels;
  int64_t size() const { return images.size(0); }
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// W1 on a batch, batch-vectorised: normalize, flip each image with p = 0.5, crop 28x28 at a
/// random place after padding 2.
inline at::Tensor hand_prepare(const at::Tensor& images_u8, at::Generator& gen) {
  const int64_t n = images_u8.size(0), h = images_u8.size(1), w = images_u8.size(2);
  auto x = images_u8.to(torch::kFloat).div_(255).sub_(fashion_mean).div_(fashion_std);
  auto flip = (at::rand({n}, gen) < 0.5).view({n, 1, 1});
  x = torch::where(flip, x.flip(2), x);
  auto padded = torch::constant_pad_nd(x, {crop_padding, crop_padding, crop_padding, crop_padding});
  auto offsets = at::randint(0, 2 * crop_padding + 1, {n, 2}, gen, torch::kLong);
  auto rows = offsets.select(1, 0).view({n, 1, 1}) + torch::arange(h).view({1, h, 1});
  auto cols = offsets.select(1, 1).view({n, 1, 1}) + torch::arange(w).view({1, 1, w});
  return padded.index({torch::arange(n).view({n, 1, 1}), rows, cols});
}

/// The hand-written loop: shuffled batches, prepared (and, with `train`, trained on) in turn.
inline double hand_loop(const Fashion& data, int64_t batch_size, bool train) {
  Model model = make_model();
  auto gen = at::detail::createCPUGenerator(7);
  const auto start = std::chrono::steady_clock::now();
  const auto order = at::randperm(data.size(), gen, torch::kLong);
  for (int64_t first = 0; first < data.size(); first += batch_size) {
    const auto positions = order.narrow(0, first, std::min(batch_size, data.size() - first));
    auto x = hand_prepare(data.images.index_select(0, positions), gen);
    if (train) bp::train_step(model.module, model.optimizer, x, data.labels.index_select(0, positions));
  }
  return static_cast<double>(data.size()) / seconds_since(start);
}

/// The model alone: batches normalised once up front, not augmented, in order.
inline double model_alone(const Fashion& data, int64_t batch_size) {
  Model model = make_model();
  const auto images = data.images.to(torch::kFloat).div_(255).sub_(fashion_mean).div_(fashion_std);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < data.size(); first += batch_size) {
    const int64_t n = std::min(batch_size, data.size() - first);
    bp::train_step(model.module, model.optimizer, images.narrow(0, first, n),
                   data.labels.narrow(0, first, n));
  }
  return static_cast<double>(data.size()) / seconds_since(start);
}

/// The examples of a torch::data dataset: one uint8 image and its label.
class FashionExamples : public torch::data::datasets::Dataset<FashionExamples> {
 public:
  explicit FashionExamples(const Fashion& data) : data_(data) {}
  torch::data::Example<> get(size_t index) override {
    const auto i = static_cast<int64_t>(index);
    return {data_.images[i], data_.labels[i]};
  }
  torch::optional<size_t> size() const override { return static_cast<size_t>(data_.size()); }

 private:
  Fashion data_;
};

/// W1 as a per-example transform (the way torch::data applies augmentations).
struct Augment : torch::data::transforms::TensorTransform<> {
  at::Tensor operator()(at::Tensor image) override {
    thread_local std::mt19937 rng(std::random_device{}());
    auto x = image.to(torch::kFloat).div_(255).sub_(fashion_mean).div_(fashion_std);
    if (std::bernoulli_distribution(0.5)(rng)) x = x.flip(1);
    std::uniform_int_distribution<int64_t> offset(0, 2 * crop_padding);
    auto padded = torch::constant_pad_nd(x, {crop_padding, crop_padding, crop_padding, crop_padding});
    return padded.narrow(0, offset(rng), x.size(0)).narrow(1, offset(rng), x.size(1)).contiguous();
  }
};

/// LibTorch's DataLoader: shuffled, per-example transforms, stacked, 2 worker threads.
inline double data_loader(const Fashion& data, int64_t batch_size, bool train) {
  Model model = make_model();
  auto dataset = FashionExamples(data).map(Augment()).map(torch::data::transforms::Stack<>());
  auto loader = torch::data::make_data_loader<torch::data::samplers::RandomSampler>(
      std::move(dataset), torch::data::DataLoaderOptions(static_cast<size_t>(batch_size)).workers(2));
  const auto start = std::chrono::steady_clock::now();
  for (auto& batch : *loader) {
    if (train) bp::train_step(model.module, model.optimizer, batch.data, batch.target);
  }
  return static_cast<double>(data.size()) / seconds_since(start);
}

}  // namespace benchmark_peers
