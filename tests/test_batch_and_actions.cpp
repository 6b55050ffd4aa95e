// Batch components, ACTION registration, calls by name, and pipelines as lazy values.
#include "support.hpp"

#include <array>
#include <atomic>
#include <cstdlib>

namespace {

struct Counter {
  std::atomic<int> calls{0};
};

struct ImageBatch : bp::Batch<ImageBatch> {
  ACTION(scale)(float factor) { (*this)["images"] = get("images") * factor; }
  ACTION(shift)(double offset, int times) { (*this)["images"] = get("images") + offset * times; }
  ACTION(label)(std::string text) { set("label", text); }
  ACTION(count)(Counter& counter) { ++counter.calls; }
  ACTION(keep_first)() {
    ImageBatch fresh;  // a new batch of its own items: the pipeline takes it in place of this one
    fresh.set("images", get("images").narrow(0, 0, 1));
    return fresh;
  }
  ACTION(same)() { return *this; }
  ACTION(swap_in)(ImageBatch& spare) { return spare; }  // a reference to another batch
  ACTION(sometimes, .probability = 0.5)(Counter& counter) { ++counter.calls; }
  ACTION(generic)(auto value) { set("generic", value); }  // a template: fluent only, not by name

 private:
  ACTION(hidden)() { set("hidden", 1); }  // registered even in a private section
};

bp::Dataset<ImageBatch> images(std::size_t n) {
  return bp::Dataset<ImageBatch>(n, {{"images", torch::ones({static_cast<int64_t>(n), 2, 2})}});
}

}  // namespace

TEST_CASE("components are reachable by name and per item", "[batch]") {
  auto batch = images(4).create_batch(std::vector<std::size_t>{3, 1});
  CHECK(batch.components() == std::vector<std::string>{"images"});
  CHECK(batch["images"].size(0) == 2);
  CHECK(batch.item(1).id() == bp::Id{int64_t{1}});

  batch.item(0)["images"].fill_(5);  // an item's row is a view into the batch
  CHECK(batch.get("images")[0].sum().item<float>() == 20);

  batch.set("names", std::vector<std::string>{"x", "y"});
  CHECK(batch.item(1).get<std::string>("names") == "y");
  CHECK(batch.get<std::vector<std::string>>("names").size() == 2);

  CHECK_THROWS_WITH(batch.get("labels"), test::contains("no component 'labels' (components: images, names)"));
  CHECK_THROWS_WITH(batch.get<int>("images"), test::contains("component 'images' holds at::Tensor, not int"));
  CHECK_THROWS_WITH(batch.item(2), test::contains("item 2 is out of range (batch of 2)"));
  batch.set("short", std::vector<int>{7});  // fewer elements than items: an error, not a crash
  CHECK_THROWS_WITH(batch.item(1).get<int>("short"),
                    test::contains("component 'short' has 1 elements, too few for item 1 of a batch of 2"));
  batch.erase("names");
  CHECK_FALSE(batch.has("names"));
  CHECK_THROWS_WITH(bp::Random(1).below(0), test::contains("Random::below(0)"));
}

TEST_CASE("a copy of a Random continues on its own, its LibTorch generator too", "[actions]") {
  bp::Random original(21);
  (void)at::rand({2}, original.torch_generator());
  bp::Random copy = original;
  bp::Random assigned(3);
  assigned = original;
  const auto next = at::rand({4}, original.torch_generator());
  CHECK(at::equal(at::rand({4}, copy.torch_generator()), next));  // once shared: a later draw
  CHECK(at::equal(at::rand({4}, assigned.torch_generator()), next));
  CHECK(copy() == original());  // the stream's own draws as before
}

TEST_CASE("Random::below is uniform over its range and draws as earlier versions did", "[actions]") {
  bp::Random rng(5);
  std::array<int, 6> counts{};
  for (int i = 0; i < 60000; ++i) ++counts[static_cast<std::size_t>(rng.below(6))];
  for (const int count : counts) CHECK(std::abs(count - 10000) < 500);  // 5 standard deviations
  int wrong = 0;
  for (int i = 0; i < 1000; ++i) wrong += rng.below(1) != 0;
  const std::uint64_t huge = (std::uint64_t{1} << 63) + 1;  // rejections are frequent here
  for (int i = 0; i < 1000; ++i) wrong += rng.below(huge) >= huge;
  CHECK(wrong == 0);
  // The reference: modulo, rejecting draws below 2^64 mod n. Seeded shuffles stay as they were.
  const auto reference = [](bp::Random& stream, std::uint64_t n) {
    const std::uint64_t threshold = (0 - n) % n;
    for (;;) {
      const std::uint64_t draw = stream();
      if (draw >= threshold) return draw % n;
    }
  };
  bp::Random ours(11), theirs(11);
  int differences = 0;
  for (const std::uint64_t n :
       {std::uint64_t{1}, std::uint64_t{7}, std::uint64_t{1000}, huge, ~std::uint64_t{0}}) {
    for (int i = 0; i < 2000; ++i) differences += ours.below(n) != reference(theirs, n);
  }
  CHECK(differences == 0);
}

TEST_CASE("the registry lists every action with its options", "[actions]") {
  const auto list = ImageBatch::actions().list();
  std::vector<std::string> names;
  for (const auto& action : list) names.push_back(action.name);
  CHECK(names == std::vector<std::string>{"scale", "shift", "label", "count", "keep_first", "same", "swap_in",
                                          "sometimes", "generic", "hidden"});
  const auto& shift = ImageBatch::actions().info("shift");
  CHECK(shift.parameters == std::vector<std::string>{"double", "int"});
  CHECK(shift.callable_by_name);
  CHECK(ImageBatch::actions().info("count").parameters ==
        std::vector<std::string>{"(anonymous namespace)::Counter&"});
  CHECK(ImageBatch::actions().info("sometimes").probability == 0.5);
  CHECK_FALSE(ImageBatch::actions().info("generic").callable_by_name);
  CHECK_THROWS_WITH(ImageBatch::actions().info("rotate"),
                    test::contains("has no action 'rotate' (actions: scale, shift"));
}

TEST_CASE("actions are called by name with arguments checked at run time", "[actions]") {
  auto batch = images(2).create_batch(std::vector<std::size_t>{0, 1});
  const auto& actions = ImageBatch::actions();
  actions.call(batch, "scale", {3});  // an int converts to the float parameter
  CHECK(batch.get("images").sum().item<float>() == 24);
  actions.call(batch, "shift", {0.5f, 2});
  CHECK(batch.get("images").sum().item<float>() == 32);
  actions.call(batch, "label", {"text"});
  CHECK(batch.get<std::string>("label") == "text");
  Counter counter;
  actions.call(batch, "count", {std::ref(counter)});
  CHECK(counter.calls == 1);

  CHECK_THROWS_WITH(actions.call(batch, "scale", {}),
                    test::contains("action 'scale' of") && test::contains("takes 1 argument(s), got 0"));
  CHECK_THROWS_WITH(actions.call(batch, "scale", {std::string("x")}),
                    test::contains("action 'scale': parameter 1 (of 1, float) must be float, got std::"));
  CHECK_THROWS_WITH(actions.call(batch, "generic", {1}), test::contains("cannot be called by name"));
  CHECK_THROWS_WITH(actions.call(batch, "nope"), test::contains("has no action 'nope'"));
}

TEST_CASE("pipelines are lazy values", "[pipeline]") {
  auto dataset = images(6);
  Counter counter;
  auto base = dataset.pipeline().scale(2.0f);
  auto counted = base.count(counter);                               // builds a new pipeline ...
  CHECK(base.action_names() == std::vector<std::string>{"scale"});  // ... and leaves base alone
  CHECK(counted.action_names() == std::vector<std::string>{"scale", "count"});
  CHECK(counter.calls == 0);  // nothing ran

  auto by_name = dataset.pipeline().append("shift", {1.0, 1}).append("count", {std::ref(counter)});
  auto both = counted + by_name;
  CHECK(both.action_names() == std::vector<std::string>{"scale", "count", "shift", "count"});

  const auto stats = both.run({.batch_size = 4});
  CHECK(stats.batches == 2);
  CHECK(stats.items == 6);
  CHECK(counter.calls == 4);
  auto batch = both.next_batch({.batch_size = 6});
  CHECK(batch->get("images").sum().item<float>() == 6 * 4 * 3);  // 1 * 2 + 1 on every pixel

  SECTION("a pipeline without a dataset is an error when run, and can be bound later") {
    bp::Pipeline<ImageBatch> unbound;
    auto template_pipeline = unbound.scale(10.0f);
    CHECK_THROWS_WITH(template_pipeline.run({}), test::contains("has no dataset"));
    auto bound = template_pipeline.with(dataset);
    CHECK(bound.next_batch({.batch_size = 1})->get("images").sum().item<float>() == 40);
    CHECK((unbound + dataset.pipeline()).has_dataset());
  }
}

TEST_CASE("an action changes its batch in place or returns a new one", "[actions]") {
  auto dataset = images(5);
  auto replaced = dataset.pipeline().keep_first().same().generic(7).next_batch({.batch_size = 5});
  REQUIRE(replaced);
  CHECK(replaced->get("images").size(0) == 1);
  CHECK(replaced->size() == 5);  // a batch made from scratch keeps the old batch's items
  CHECK(replaced->number() == 0);
  CHECK(replaced->get<int>("generic") == 7);
  // A reference to another batch: its contents replace the batch's, which keeps its number, epoch
  // and items.
  ImageBatch spare;
  spare.set("images", torch::zeros({2, 2, 2}));
  auto pipeline = dataset.pipeline().swap_in(spare);
  auto stream = pipeline.gen_batch({.batch_size = 2, .n_epochs = 2});
  for (std::size_t number = 0; number < 6; ++number) {
    auto swapped = stream.next();
    REQUIRE(swapped);
    CHECK(swapped->number() == number);
    CHECK(swapped->epoch() == number / 3);
    CHECK(swapped->size() == (number % 3 == 2 ? 1 : 2));
    CHECK(swapped->get("images").sum().item<float>() == 0);
  }
  auto hidden = dataset.pipeline().append("hidden").next_batch({.batch_size = 5});
  CHECK(hidden->get<int>("hidden") == 1);
}

TEST_CASE("p is the probability that a batch goes through the action", "[actions]") {
  auto dataset = bp::Dataset<ImageBatch>(4000);
  Counter counter;
  dataset.pipeline().sometimes(counter).run({.batch_size = 1, .seed = 3, .prefetch = 2});
  CHECK(counter.calls > 1800);
  CHECK(counter.calls < 2200);
  Counter again;
  dataset.pipeline().sometimes(again).run({.batch_size = 1, .seed = 3});
  CHECK(again.calls == counter.calls);  // the same seed skips the same batches
}
