// MODEL: built once per class, on first use, shared by actions; the model directory.
#include "support.hpp"

#include <unistd.h>

#include <filesystem>
#include <thread>
#include <vector>

namespace {

std::atomic<int> builds{0};
std::atomic<bool> fail_next_build{false};

struct Counted {
  int serial;
  int uses = 0;
};

struct ModelBatch : bp::Batch<ModelBatch> {
  MODEL(counted)() {
    if (fail_next_build.exchange(false)) throw std::runtime_error("no GPU today");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // widen the race window
    return Counted{++builds};
  }
  MODEL(plain)() { return std::string("plain model"); }

  ACTION(use_a, .model = "counted", .singleton = true)(Counted& model) { ++model.uses; }
  ACTION(use_b, .model = "counted", .singleton = true)(Counted& model, int times) { model.uses += times; }
  ACTION(describe, .model = "plain")(const std::string& model) { set("description", model); }
};

}  // namespace

TEST_CASE("a model is built once even when 16 threads ask at once", "[models]") {
  auto& models = ModelBatch::models();
  models.reset();
  builds = 0;
  CHECK_FALSE(models.is_built("counted"));

  std::vector<std::shared_ptr<Counted>> got(16);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = models.get<Counted>("counted"); });
  }
  for (auto& thread : threads) thread.join();
  CHECK(builds == 1);
  for (const auto& model : got) CHECK(model.get() == got.front().get());
  CHECK(models.is_built("counted"));
}

TEST_CASE("actions share their model, built on first use", "[models]") {
  auto& models = ModelBatch::models();
  models.reset();
  builds = 0;
  bp::Dataset<ModelBatch> dataset(10);
  auto pipeline = dataset.pipeline().use_a().use_b(10).describe();
  CHECK(builds == 0);  // building the pipeline builds nothing
  pipeline.run({.batch_size = 2, .prefetch = 3});
  CHECK(builds == 1);
  CHECK(models.get<Counted>("counted")->uses == 5 * 11);
  CHECK(pipeline.next_batch({.batch_size = 3})->get<std::string>("description") == "plain model");
}

TEST_CASE("the model directory lists, reads typed and resets", "[models]") {
  auto& models = ModelBatch::models();
  models.reset();
  CHECK(models.names() == std::vector<std::string>{"counted", "plain"});
  auto list = models.list();
  REQUIRE(list.size() == 2);
  CHECK(list[1].type.find("string") != std::string::npos);
  CHECK_FALSE(list[1].built);

  auto first = models.get<Counted>("counted");
  models.reset("counted");
  auto second = models.get<Counted>("counted");
  CHECK(first.get() != second.get());
  CHECK(first->serial != second->serial);  // the old one lives on while someone holds it

  models.set("plain", std::string("loaded"));
  CHECK(*models.get<std::string>("plain") == "loaded");

  CHECK_THROWS_WITH(models.get<int>("counted"),
                    test::contains("model 'counted' of") &&
                        test::contains("is a (anonymous namespace)::Counted, not a int"));
  CHECK_THROWS_WITH(models.get<int>("cnn"), test::contains("has no model 'cnn' (models: counted, plain)"));
}

TEST_CASE("a model whose definition throws is not kept and is tried again", "[models]") {
  auto& models = ModelBatch::models();
  models.reset();
  fail_next_build = true;
  bp::Dataset<ModelBatch> dataset(4);
  try {
    // Without prefetch nothing runs after the failing batch, so nothing builds the model again.
    dataset.pipeline().use_a().run({.batch_size = 2});
    FAIL("the run should have thrown");
  } catch (const bp::ActionError& e) {
    CHECK(e.action() == "use_a");
    CHECK(test::full_message(e).find("building model 'counted'") != std::string::npos);
    CHECK(test::full_message(e).find("no GPU today") != std::string::npos);
  }
  CHECK_FALSE(models.is_built("counted"));
  test::finishes_within(std::chrono::seconds(30),
                        [&] { dataset.pipeline().use_a().run({.batch_size = 2, .prefetch = 1}); });
  CHECK(models.get<Counted>("counted")->uses == 2);
}

namespace {

/// A counter whose start and step come from the instance's config.
struct Counter {
  int64_t value;
  int64_t step;
};

using Linear = bp::TorchModel<torch::nn::Linear, torch::optim::SGD>;

struct InstanceBatch : bp::Batch<InstanceBatch> {
  MODEL(counter)(const bp::Config& config) {
    return Counter{config.get_or<int64_t>("start", 0), config.get_or<int64_t>("step", 1)};
  }
  MODEL(classifier)(const bp::Config& config) {
    torch::manual_seed(config.get_or<int64_t>("seed", 0));
    torch::nn::Linear net(2, 2);
    return Linear{net, torch::optim::SGD(net->parameters(), config.get_or("lr", 0.5))};
  }

  ACTION(count, .model = "counter", .singleton = true)(Counter& counter) {
    counter.value += counter.step;
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // let two pipelines interleave
  }
  ACTION(train, .model = "classifier", .singleton = true)(Linear& model) {
    bp::train_step(model.module, model.optimizer, get("x"), get("y"));
  }
  ACTION(evaluate, .model = "classifier")(Linear& model) {
    bp::evaluate(model.module, get("x"), get("y"), variable<bp::Accuracy>("accuracy"));
  }
};

/// Two separable classes: y = 1 when x0 + x1 > 0.
bp::Dataset<InstanceBatch> separable(int64_t n, uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  const at::Tensor x = torch::randn({n, 2});
  const at::Tensor y = (x.sum(1) > 0).to(torch::kLong);
  return bp::Dataset<InstanceBatch>(static_cast<std::size_t>(n), {{"x", x}, {"y", y}});
}

double accuracy_of(const bp::Pipeline<InstanceBatch>& evaluation) {
  auto pipeline = evaluation.init_variable("accuracy", bp::Accuracy{}).evaluate();
  pipeline.run({.batch_size = 64, .prefetch = 2});
  return pipeline.variables().value<bp::Accuracy>("accuracy").value();
}

}  // namespace

TEST_CASE(
    "a model definition takes its instance's config; two instances trained side by side stay independent",
    "[models][instances]") {
  auto& models = InstanceBatch::models();
  models.reset();
  bp::Dataset<InstanceBatch> dataset(40);
  const auto counting = dataset.pipeline().count();
  const auto tens = counting.init_model("counter", bp::Config::parse(R"({"start": 1000, "step": 10})"));
  const auto ones = counting.init_model("counter", bp::Config::parse(R"({"start": 0, "step": 1})"));

  std::thread other([&] { tens.run({.batch_size = 4, .n_epochs = 3, .prefetch = 2}); });
  ones.run({.batch_size = 4, .n_epochs = 2, .prefetch = 4});
  other.join();

  CHECK(tens.model<Counter>("counter")->value == 1000 + 30 * 10);  // 3 epochs of 10 batches
  CHECK(ones.model<Counter>("counter")->value == 20);
  CHECK(tens.model_instance("counter").config().get<int>("step") == 10);
  // The class's instance was never used, and the pipeline without an instance of its own uses it.
  CHECK_FALSE(models.is_built("counter"));
  counting.run({.batch_size = 40});
  CHECK(models.get<Counter>("counter")->value == 1);
  CHECK(counting.model_instance("counter") == models.model_instance("counter"));
  // Chained pipelines share their instance; init_model leaves the pipeline it was called on as it was.
  const auto more = tens.count();
  more.run({.batch_size = 40});
  CHECK(tens.model<Counter>("counter")->value == 1000 + 30 * 10 + 2 * 10);
  CHECK_THROWS_WITH(dataset.pipeline().init_model("countr"),
                    test::contains("has no model 'countr' (models: counter, classifier)"));
}

TEST_CASE(
    "a trained instance passed to an evaluation pipeline, or saved and loaded, gives the measured accuracy",
    "[models][instances]") {
  const auto train_data = separable(512, 1);
  const auto test_data = separable(256, 2);
  const auto config = bp::Config::parse(R"({"seed": 3, "lr": 0.5})");
  const auto training = train_data.pipeline().init_model("classifier", config).train();
  training.run({.batch_size = 32, .n_epochs = 5, .shuffle = 4, .prefetch = 2});
  training.model<Linear>("classifier")->module->eval();

  // Measured in the training process, with the training pipeline's instance.
  const double measured = accuracy_of(test_data.pipeline().with_model(training.model_instance("classifier")));
  CHECK(measured > 0.9);
  // A fresh instance of the same config has not learned.
  const double untrained = accuracy_of(test_data.pipeline().init_model("classifier", config));
  CHECK(untrained < measured);

  // Saved and loaded into another pipeline's own instance.
  const auto file =
      std::filesystem::temp_directory_path() / ("batchpipe_instance_" + std::to_string(::getpid()) + ".pt");
  bp::save_model(training, "classifier", file);
  const auto evaluation = test_data.pipeline().init_model("classifier", config);
  bp::load_model(evaluation, "classifier", file);
  evaluation.model<Linear>("classifier")->module->eval();
  CHECK(accuracy_of(evaluation) == measured);
  std::filesystem::remove(file);
  CHECK_FALSE(InstanceBatch::models().is_built("classifier"));

  CHECK_THROWS_WITH(bp::save_model(training, "counter", file),
                    test::contains("which a checkpoint cannot hold"));
  CHECK_THROWS_WITH(bp::Pipeline<ModelBatch>().with_model(training.model_instance("classifier")),
                    test::contains("model 'classifier' is of another batch class"));
}
