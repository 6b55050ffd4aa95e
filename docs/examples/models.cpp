// docs/models.md: a model definition, actions sharing it, and the model directory.
#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <iostream>

// The descriptor: whatever the actions need. Here a network and its optimizer.
struct Regressor {
  torch::nn::Linear net;
  torch::optim::SGD optimizer;
};

struct LineBatch : bp::Batch<LineBatch> {
  // Never called by you: built once, on first use, kept in LineBatch's model directory.
  MODEL(line)() {
    torch::nn::Linear net(1, 1);
    return Regressor{net, torch::optim::SGD(net->parameters(), torch::optim::SGDOptions(0.1))};
  }

  // Several actions share the model. Training is a singleton: one step at a time.
  ACTION(train_step, .model = "line", .singleton = true)(Regressor& model, std::vector<float>& losses) {
    model.optimizer.zero_grad();
    auto loss = torch::mse_loss(model.net(get("x")), get("y"));
    loss.backward();
    model.optimizer.step();
    losses.push_back(loss.item<float>());
  }

  ACTION(predict, .model = "line")(Regressor& model) {
    torch::NoGradGuard no_grad;
    (*this)["prediction"] = model.net(get("x"));
  }
};

int main() {
  auto x = torch::rand({512, 1});
  bp::Dataset<LineBatch> dataset(512, {{"x", x}, {"y", 3 * x + 1}});

  std::vector<float> losses;
  auto training = dataset.pipeline().train_step(losses);
  std::cout << "built before the run? " << LineBatch::models().is_built("line") << '\n';
  training.run({.batch_size = 32, .n_epochs = 20, .shuffle = 0, .prefetch = 2});

  auto model = LineBatch::models().get<Regressor>("line");  // typed read
  std::cout << "weight " << model->net->weight.item<float>() << ", bias " << model->net->bias.item<float>()
            << ", loss " << losses.front() << " -> " << losses.back() << '\n';

  auto batch = dataset.pipeline().predict().next_batch({.batch_size = 4});
  std::cout << "prediction for x = " << batch->get("x")[0].item<float>() << ": "
            << batch->get("prediction")[0].item<float>() << '\n';

  for (const auto& info : LineBatch::models().list()) std::cout << info.name << ": " << info.type << '\n';
  LineBatch::models().reset("line");  // the next use builds a fresh model
  return losses.back() < losses.front() / 10 ? 0 : 1;
}
