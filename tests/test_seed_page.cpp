// The seed page ("Working with models") written in C++: a model definition, a model-based
// singleton training action and an evaluation action sharing the model, under prefetch.
#include "support.hpp"

namespace {

struct BasicModel {  // the descriptor: everything the actions need
  torch::nn::Linear layer;
  torch::optim::SGD optimizer;
};

struct Scores {
  std::atomic<int64_t> correct{0};
  std::atomic<int64_t> total{0};
  std::vector<float> losses;
};

struct MyArrayBatch : bp::Batch<MyArrayBatch> {
  MODEL(basic_model)() {
    torch::manual_seed(0);
    torch::nn::Linear layer(2, 2);
    return BasicModel{layer, torch::optim::SGD(layer->parameters(), torch::optim::SGDOptions(0.5))};
  }

  ACTION(train_model, .model = "basic_model", .singleton = true)(BasicModel& model, Scores& scores) {
    model.optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model.layer(get("data")), get("labels"));
    loss.backward();
    model.optimizer.step();
    scores.losses.push_back(loss.item<float>());
  }

  ACTION(evaluate_model, .model = "basic_model")(BasicModel& model, Scores& scores) {
    torch::NoGradGuard no_grad;
    scores.correct += model.layer(get("data")).argmax(1).eq(get("labels")).sum().item<int64_t>();
    scores.total += static_cast<int64_t>(size());
  }
};

// Two classes: which side of the line x + y = 0 a point lies on.
bp::Dataset<MyArrayBatch> points(int64_t n) {
  torch::manual_seed(1);
  auto data = torch::randn({n, 2});
  auto labels = (data.sum(1) > 0).to(torch::kLong);
  return bp::Dataset<MyArrayBatch>(static_cast<std::size_t>(n), {{"data", data}, {"labels", labels}});
}

}  // namespace

TEST_CASE("the seed page's workflow learns under prefetch", "[seed]") {
  MyArrayBatch::models().reset();
  auto [train, test, validation] = points(4000).split(0.75, 3);
  Scores before, after, scores;

  test.pipeline().evaluate_model(before).run({.batch_size = 100});
  train.pipeline().train_model(scores).run({.batch_size = 50, .n_epochs = 3, .shuffle = 7, .prefetch = 4});
  test.pipeline().evaluate_model(after).run({.batch_size = 100, .prefetch = 4});

  CHECK(scores.losses.size() == 3 * 3000 / 50);
  CHECK(after.total == 1000);
  const double accuracy = static_cast<double>(after.correct) / static_cast<double>(after.total);
  CHECK(accuracy > 0.95);
  CHECK(accuracy > static_cast<double>(before.correct) / static_cast<double>(before.total));
  CHECK(scores.losses.back() < scores.losses.front() / 2);
  // One model, built once and shared by both actions.
  CHECK(MyArrayBatch::models().list().size() == 1);
  CHECK(MyArrayBatch::models().is_built("basic_model"));
}
