#pragma once
/// @file training.hpp
/// @brief Helpers for the common model-based actions on LibTorch models: a model descriptor
/// holding a module and its optimizer, a training step, predict, and evaluate into a variable.

#include <batchpipe/core/parallel.hpp>
#include <batchpipe/core/variables.hpp>

#include <ATen/core/Tensor.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/utils.h>

#include <cstdint>
#include <functional>

namespace batchpipe {

/// @brief A model descriptor: a LibTorch module (a ModuleHolder such as torch::nn::Sequential,
/// or a std::shared_ptr to a module) and its optimizer. Checkpoints know how to save it.
///
/// @code
/// MODEL(mlp)() {
///   torch::nn::Sequential net(torch::nn::Linear(784, 256), torch::nn::ReLU(), torch::nn::Linear(256, 10));
///   return bp::TorchModel<torch::nn::Sequential, torch::optim::Adam>{
///       net, torch::optim::Adam(net->parameters(), 1e-3)};
/// }
/// @endcode
template <class Module, class Optimizer>
struct TorchModel {
  Module module;        ///< the module: a ModuleHolder, or a std::shared_ptr to a module
  Optimizer optimizer;  ///< the optimizer of the module's parameters
};

/// @brief The default loss of the helpers: cross-entropy on class indices.
inline at::Tensor cross_entropy_loss(const at::Tensor& output, const at::Tensor& target) {
  return torch::nn::functional::cross_entropy(output, target);
}

/// @brief A loss: the module's output and the targets to a scalar tensor (see train_step).
using LossFunction = std::function<at::Tensor(const at::Tensor& output, const at::Tensor& target)>;

namespace detail {
/// The optimizer's update of a training step, with the run's workers let in to prepare batches
/// meanwhile (WorkersMayPrepare): shared by the one-process and the data-parallel train_step.
template <class Optimizer>
void update_parameters(Optimizer& optimizer) {
  const WorkersMayPrepare during_the_update;
  optimizer.step();
}
}  // namespace detail

/// @brief One optimisation step: forward, loss, backward, optimizer step. Returns the loss.
/// Puts the module in training mode. Call it from a singleton action. With prefetch, the workers
/// prepare batches during the optimizer's update (WorkersMayPrepare).
template <class Module, class Optimizer>
double train_step(Module& module, Optimizer& optimizer, const at::Tensor& inputs, const at::Tensor& targets,
                  const LossFunction& loss_function = cross_entropy_loss) {
  module->train();
  optimizer.zero_grad();
  at::Tensor loss = loss_function(module->forward(inputs), targets);
  loss.backward();
  detail::update_parameters(optimizer);
  return loss.template item<double>();
}

/// @brief The module's output for `inputs`, without gradients. The module's mode is left as it
/// is: put it in eval mode (`module->eval()`) before evaluating, once, outside the run.
template <class Module>
at::Tensor predict(Module& module, const at::Tensor& inputs) {
  torch::NoGradGuard no_grad;
  return module->forward(inputs);
}

/// @brief Counts of correct predictions, to accumulate in a pipeline variable.
struct Accuracy {
  /// Correct predictions so far.
  std::int64_t correct = 0;
  /// Predictions so far.
  std::int64_t total = 0;
  /// The share of correct predictions, correct / total; 0 before any prediction.
  double value() const { return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

/// @brief Adds the batch's correct predictions (arg-max of the output against class indices)
/// to an Accuracy variable. Safe on several batches at once.
template <class Module>
void evaluate(Module& module, const at::Tensor& inputs, const at::Tensor& targets,
              Variable<Accuracy> accuracy) {
  const at::Tensor predicted = predict(module, inputs).argmax(1);
  const auto correct = predicted.eq(targets.to(predicted.device())).sum().template item<std::int64_t>();
  accuracy.update([&](Accuracy& a) {
    a.correct += correct;
    a.total += targets.size(0);
  });
}

}  // namespace batchpipe
