// MODEL: built once per class, on first use, shared by actions; the model directory.
#include "support.hpp"

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
