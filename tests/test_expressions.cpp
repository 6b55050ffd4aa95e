// Named expressions (B, V, C, F, R, ids, positions) evaluated for each batch, and pipelines
// written in a config (keyword arguments, defaults, errors).
#include "support.hpp"

#include <climits>

#include <unistd.h>

#include <any>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

/// What the observe action saw for one batch.
struct Seen {
  int tag = 0;
  float scale = 0;
  double rate = 0;
  std::size_t size = 0;
  float draw = 0;
  std::vector<float> item_draws;
  std::vector<bp::Id> ids;
  std::vector<std::size_t> rows;
  // What the batch itself says, to compare with.
  std::size_t number = 0;
  std::vector<bp::Id> own_ids;
  friend bool operator==(const Seen&, const Seen&) = default;
};

using SeenByBatch = std::map<std::size_t, Seen>;

struct ExprBatch : bp::Batch<ExprBatch> {
  ACTION(tag)() { set("tag", static_cast<int>(number()) * 10 + 1); }

  ACTION(observe, .params = "tag, scale, rate, size, draw, item_draws, ids, rows")
  (int tag, float scale, double rate, std::size_t size, float draw, const std::vector<float>& item_draws,
   std::vector<bp::Id> ids, std::vector<std::size_t> rows) {
    Seen seen{tag,      scale,        rate, size, draw, item_draws, std::move(ids), std::move(rows),
              number(), index().ids()};
    variable<SeenByBatch>("seen").update([&](SeenByBatch& all) { all[seen.number] = seen; });
  }

  ACTION(scaled, .params = "factor")(float factor) { set("scaled", factor); }
};

SeenByBatch observe_run(bp::RunOptions options) {
  // Ids 100 .. 109 in rows 0 .. 9: positions() gives the rows, ids() the ids.
  auto dataset = bp::Dataset<ExprBatch>(
      bp::Index(std::vector<std::int64_t>{100, 101, 102, 103, 104, 105, 106, 107, 108, 109}));
  auto pipeline =
      dataset.pipeline()
          .init_variable("seen", SeenByBatch{})
          .init_variable("scale", 2.5f)
          .tag()
          .observe(bp::B("tag"), bp::V("scale"), bp::C("train.rate"),
                   bp::F([](const ExprBatch& b) { return b.size(); }),
                   bp::R<std::uniform_real_distribution>(0.0f, 1.0f),
                   bp::R(std::normal_distribution<float>(0.0f, 1.0f)).per_item(), bp::ids(), bp::positions())
          // The config comes after the action that reads it: C(...) is read per batch.
          .with_config(bp::Config::parse(R"({"train": {"rate": 0.125}})"));
  pipeline.run(options);
  return pipeline.variables().value<SeenByBatch>("seen");
}

}  // namespace

TEST_CASE("every kind of expression gives the action the value of its own batch", "[expressions]") {
  for (std::size_t prefetch : {0u, 4u}) {
    CAPTURE(prefetch);
    const SeenByBatch seen =
        observe_run({.batch_size = 4, .n_epochs = 2, .shuffle = 7, .prefetch = prefetch});
    REQUIRE(seen.size() == 6);
    for (const auto& [number, batch] : seen) {
      CHECK(batch.number == number);
      CHECK(batch.tag == static_cast<int>(number) * 10 + 1);  // B: this batch's component
      CHECK(batch.scale == 2.5f);                             // V
      CHECK(batch.rate == 0.125);                             // C
      CHECK(batch.size == (number % 3 == 2 ? 2u : 4u));       // F: 10 items in batches of 4
      CHECK(batch.ids == batch.own_ids);
      CHECK(batch.item_draws.size() == batch.size);
      REQUIRE(batch.rows.size() == batch.size);
      for (std::size_t i = 0; i < batch.size; ++i) {
        CHECK(static_cast<std::int64_t>(batch.rows[i]) == batch.ids[i].integer() - 100);
      }
      CHECK(batch.draw >= 0.0f);
      CHECK(batch.draw < 1.0f);
    }
    CHECK(seen.at(0).draw != seen.at(1).draw);  // each batch draws from its own stream
  }
}

TEST_CASE("R draws the same values for one seed at any prefetch and thread count", "[expressions]") {
  const SeenByBatch reference = observe_run({.batch_size = 3, .n_epochs = 2, .shuffle = 11});
  for (std::size_t prefetch : {0u, 1u, 4u}) {
    for (std::size_t threads : {1u, 2u}) {
      CAPTURE(prefetch, threads);
      const bool same =
          observe_run(
              {.batch_size = 3, .n_epochs = 2, .shuffle = 11, .prefetch = prefetch, .threads = threads}) ==
          reference;
      CHECK(same);
    }
  }
  // The draw is the first of the batch's own stream, as the action would draw it itself.
  const SeenByBatch other_seed = observe_run({.batch_size = 3, .n_epochs = 2, .shuffle = 12});
  CHECK(other_seed.at(0).draw != reference.at(0).draw);
}

TEST_CASE("V and C are read when the batch runs, not when the pipeline is built", "[expressions]") {
  auto pipeline = bp::Dataset<ExprBatch>(4).pipeline().init_variable("factor", 1.5f).scaled(bp::V("factor"));
  std::optional<ExprBatch> batch = pipeline.gen_batch({.batch_size = 4}).next();
  CHECK(batch->get<float>("scaled") == 1.5f);
  pipeline.variable<float>("factor").set(3.0f);
  CHECK(pipeline.gen_batch({.batch_size = 4}).next()->get<float>("scaled") == 3.0f);

  auto configured = bp::Dataset<ExprBatch>(4).pipeline().scaled(bp::C<int>("factor"));
  CHECK(configured.with_config(bp::Config::parse(R"({"factor": 2})"))
            .gen_batch({.batch_size = 4})
            .next()
            ->get<float>("scaled") == 2.0f);
  CHECK(configured.with_config(bp::Config::parse(R"({"factor": 5})"))
            .gen_batch({.batch_size = 4})
            .next()
            ->get<float>("scaled") == 5.0f);
}

TEST_CASE(
    "an untyped expression of the wrong type is an error naming the action, the parameter and both types",
    "[expressions]") {
  auto dataset = bp::Dataset<ExprBatch>(4);
  const auto fails_with = [&](const bp::Pipeline<ExprBatch>& pipeline, std::vector<std::string> parts) {
    try {
      pipeline.run({.batch_size = 4});
      FAIL("no error");
    } catch (const bp::ActionError& e) {
      const std::string message = test::full_message(e);
      CHECK(e.action() == "scaled");
      for (const auto& part : parts) CHECK_THAT(message, test::contains(part));
    }
  };
  fails_with(dataset.pipeline().tag().scaled(bp::B("tag")),
             {"parameter 'factor' (1 of 1, float) = B(\"tag\")", "component 'tag' holds int, not float"});
  fails_with(dataset.pipeline().init_variable("factor", std::string("x")).scaled(bp::V("factor")),
             {"parameter 'factor'", "V(\"factor\")", "is a std::string, not a float"});
  fails_with(
      dataset.pipeline().scaled(bp::C("lr")).with_config(bp::Config::parse(R"({"lr": "fast"})", "run.json")),
      {"parameter 'factor'", "C(\"lr\")", "run.json: 'lr' is a string (\"fast\"), expected a number"});
  fails_with(dataset.pipeline().scaled(bp::C("missing")), {"C(\"missing\")", "no setting 'missing'"});
}

TEST_CASE("actions called by name take expressions and leave out trailing C++ defaults", "[expressions]") {
  bp::Dataset<bp::ImagesBatch> dataset(2, {{"images", torch::full({2, 1, 2, 2}, 5.0f)}});
  auto by_name = dataset.pipeline()
                     .append("normalize", {bp::C("mean"), 2.0})  // scale and component: C++ defaults
                     .with_config(bp::Config::parse(R"({"mean": 1})"));
  auto batch = by_name.gen_batch({.batch_size = 2}).next();
  CHECK(torch::allclose(batch->get("images"), torch::full({2, 1, 2, 2}, 2.0f)));
  CHECK_THROWS_WITH(dataset.pipeline().append("normalize", {1.0}),
                    test::contains("action 'normalize' of batchpipe::ImagesBatch takes 4 argument(s)"));
  CHECK_THROWS_WITH(dataset.pipeline().append("normalize", {1.0, std::string("x")}),
                    test::contains("parameter 'std' (2 of 4, float) must be float, got std::string"));
}

TEST_CASE("numbers called by name reach a parameter unchanged or not at all, as configs read them",
          "[expressions]") {
  bp::Dataset<bp::ImagesBatch> dataset(2);
  const auto fails = [&](std::any height, const std::string& got) {
    CHECK_THROWS_WITH(
        dataset.pipeline().append("crop", {std::move(height), 2}),
        test::contains("action 'crop': parameter 'height' (1 of 5, long) must be a whole number "
                       "from -9223372036854775808 to 9223372036854775807 (long), got " +
                       got));
  };
  fails(1e300, "1.0000000000000001e+300 (double)");
  fails(std::nan(""), "nan (double)");
  fails(2.9, "2.8999999999999999 (double)");
  fails(ULONG_MAX, "18446744073709551615 (unsigned long)");
  fails(true, "1 (bool)");
  CHECK_THROWS_WITH(dataset.pipeline().append("normalize", {1e300, 1.0}),
                    test::contains("parameter 'mean' (1 of 4, float) must be a number within"));
  CHECK_NOTHROW(dataset.pipeline().append("crop", {2.0, 2}));  // a whole double is that whole number

  using bp::detail::exact_number;
  CHECK_FALSE(exact_number<std::size_t>(-1));
  CHECK_FALSE(exact_number<int>(1e300));
  CHECK_FALSE(exact_number<int>(2147483648.0));
  CHECK(exact_number<int>(-2147483648.0) == INT_MIN);
  CHECK_FALSE(exact_number<std::uint8_t>(300));
  CHECK_FALSE(exact_number<std::int64_t>(9223372036854775808.0));
  CHECK(exact_number<std::uint64_t>(18446744073709549568.0) == 18446744073709549568ull);
  CHECK(std::isnan(*exact_number<float>(std::nan(""))));
}

namespace {

const char* const kPipelineFile = R"({
  "data": {"mean": 0.25},
  "pipeline": [
    {"normalize": {"mean": {"C": "data.mean"}, "std": 0.5, "component": "pixels"}},
    {"flip": {"p": 1}},
    "flip",
    {"crop": {"height": 2, "width": 3, "padding": 1}}
  ]
})";

// A model whose config says what it holds: for a config's "models" section.
struct ScalerBatch : bp::Batch<ScalerBatch> {
  MODEL(scaler)(const bp::Config& config) { return config.get_or("factor", 1.0); }
  ACTION(scale, .model = "scaler")(const double& factor) { set("factor", factor); }
};

std::filesystem::path write_file(const std::string& name, const std::string& text) {
  const auto file = std::filesystem::temp_directory_path() / (name + std::to_string(::getpid()) + ".json");
  std::ofstream(file) << text;
  return file;
}

}  // namespace

TEST_CASE("a pipeline loaded from a JSON file does what the same pipeline written fluently does",
          "[config]") {
  const at::Tensor pixels = torch::arange(6 * 2 * 4 * 4, torch::kFloat).reshape({6, 2, 4, 4});
  bp::Dataset<bp::ImagesBatch> dataset(6, {{"pixels", pixels}, {"images", pixels + 1}});
  const auto file = write_file("batchpipe_pipeline_", kPipelineFile);
  const auto loaded = bp::Pipeline<bp::ImagesBatch>::from_config(dataset, bp::Config::load(file));
  std::filesystem::remove(file);
  const auto fluent = dataset.pipeline()
                          .normalize(0.25f, 0.5f, 1.0f, "pixels")  // scale: the declared default
                          .flip(1.0)
                          .flip()
                          .crop(2, 3, 1);
  CHECK(loaded.action_names() == fluent.action_names());
  CHECK(loaded.config().get<double>("data.mean") == 0.25);
  for (std::size_t prefetch : {0u, 4u}) {
    auto a = loaded.gen_batch({.batch_size = 4, .n_epochs = 2, .shuffle = 3, .prefetch = prefetch});
    auto b = fluent.gen_batch({.batch_size = 4, .n_epochs = 2, .shuffle = 3, .prefetch = prefetch});
    std::size_t batches = 0;
    while (auto x = a.next()) {
      auto y = b.next();
      REQUIRE(y);
      for (const char* component : {"pixels", "images"})
        CHECK(torch::equal(x->get(component), y->get(component)));
      ++batches;
    }
    CHECK_FALSE(b.next());
    CHECK(batches == 4);
  }
}

TEST_CASE("a config's pipeline merges, rebatches, sets probabilities and configures models as code does",
          "[config]") {
  torch::manual_seed(5);
  const auto images = torch::randint(0, 256, {12, 1, 4, 4}).to(torch::kByte);
  bp::Dataset<bp::ImagesBatch> dataset(12, {{"images", images}});
  const auto config = bp::Config::parse(R"({
    "augment": {"p": 0.5},
    "pipeline": [
      {"merge": [[{"flip": {"p": 1}}], ["flip"]]},
      {"rebatch": 5},
      {"crop": {"height": 3, "width": 3}, "with_probability": {"C": "augment.p"}},
      {"flip": {}, "with_probability": 0.25}
    ]
  })",
                                        "run.json");
  const auto loaded = bp::Pipeline<bp::ImagesBatch>::from_config(dataset, config);
  const auto written = bp::merge(dataset.pipeline().flip(1.0), dataset.pipeline().flip())
                           .rebatch(5)
                           .crop(3, 3)
                           .with_probability(bp::C("augment.p"))
                           .flip()
                           .with_probability(0.25)
                           .with_config(config);
  CHECK(loaded.action_names() == written.action_names());
  CHECK(loaded.config() == config);
  auto a = loaded.gen_batch({.batch_size = 4, .n_epochs = 3, .seed = 3});
  auto b = written.gen_batch({.batch_size = 4, .n_epochs = 3, .seed = 3});
  std::size_t batches = 0;
  std::set<int64_t> widths;
  while (auto x = a.next()) {
    auto y = b.next();
    REQUIRE(y);
    CHECK(torch::equal(x->get("images"), y->get("images")));
    widths.insert(x->get("images").size(-1));
    ++batches;
  }
  CHECK_FALSE(b.next());
  CHECK(batches == 9);
  CHECK(widths == std::set<int64_t>{3, 4});  // cropped with probability 0.5: some of each

  const auto models = bp::Config::parse(R"({"models": {"scaler": {"factor": 3.5}}, "pipeline": ["scale"]})");
  auto scaled = bp::Pipeline<ScalerBatch>::from_config(bp::Dataset<ScalerBatch>(4), models);
  CHECK(scaled.next_batch({.batch_size = 4})->get<double>("factor") == 3.5);
  // The instances reach a merge's inputs too.
  const auto merged_models = bp::Config::parse(
      R"({"models": {"scaler": {"factor": 2.5}}, "pipeline": [{"merge": [["scale"], ["scale"]]}]})");
  auto both = bp::Pipeline<ScalerBatch>::from_config(bp::Dataset<ScalerBatch>(4), merged_models);
  CHECK(both.next_batch({.batch_size = 4})->get<double>("factor") == 2.5);
  CHECK_THROWS_WITH(
      bp::Pipeline<ScalerBatch>::from_config(
          bp::Dataset<ScalerBatch>(4), bp::Config::parse(R"({"models": {"scalar": {}}, "pipeline": []})")),
      test::contains("scalar"));
}

TEST_CASE(
    "every mistake in a pipeline's config is an error naming the file, the place, the action and the "
    "argument",
    "[config]") {
  bp::Dataset<bp::ImagesBatch> dataset(2);
  const auto fails = [&](const std::string& actions, const std::string& expected) {
    const auto config = bp::Config::parse(R"({"pipeline": )" + actions + "}", "run.json");
    CHECK_THROWS_WITH(bp::Pipeline<bp::ImagesBatch>::from_config(dataset, config), test::contains(expected));
  };
  fails(R"([{"normalize": {"mean": 0, "std": 1}}, "rotate"])",
        "run.json: pipeline[1]: batchpipe::ImagesBatch has no action 'rotate' (actions: load, load_images, "
        "dump, normalize");
  fails(R"([{"normalize": {"mean": 0, "std": 1, "sd": 2}}])",
        "run.json: pipeline[0]: action 'normalize' has no parameter 'sd' (parameters: mean, std, scale, "
        "component)");
  fails(R"([{"normalize": {"mean": 0}}])",
        "run.json: pipeline[0]: action 'normalize': parameter 'std' (2 of 4, float) is missing");
  fails(R"([{"normalize": {"mean": "zero", "std": 1}}])",
        "run.json: pipeline[0]: action 'normalize', parameter 'mean' (1 of 4, float): 'mean' is a string "
        "(\"zero\"), "
        "expected a number");
  fails(R"([{"crop": {"height": 2.5, "width": 2}}])",
        "run.json: pipeline[0]: action 'crop', parameter 'height' (1 of 5, long): 'height' is a number "
        "(2.5), expected an "
        "integer");
  fails(R"([{"to_device": {"device": "abacus"}}])",
        "run.json: pipeline[0]: action 'to_device', parameter 'device' (1 of 1, c10::Device): ");
  fails(R"([{"normalize": {"mean": {"R": ["uniform", 2, 1]}, "std": 1}}])",
        "needs low <= high and high - low finite, got [\"uniform\",2,1]");
  fails(R"([{"normalize": {"mean": {"R": ["normal", 0, 0]}, "std": 1}}])", "needs a finite std > 0");
  fails(R"([{"normalize": {"mean": {"R": ["uniform", -1e308, 1e308]}, "std": 1}}])",
        "needs low <= high and high - low finite, got [\"uniform\",-1e+308,1e+308]");
  fails(R"([{"crop": {"height": 1e300, "width": 2}}])", "'height' is a number (1e+300), expected an integer");
  fails(R"([{"crop": {"height": 18446744073709551615, "width": 2}}])",
        "'height' is an integer (18446744073709551615), expected a whole number from");
  fails(R"([{"crop": {"height": {"R": ["uniform", 2, 3]}, "width": 2}}])",
        "draws real numbers, and this parameter is a long");
  fails(R"([{"normalize": {"mean": {"R": ["gamma", 1, 2]}, "std": 1}}])",
        "pipeline[0]: action 'normalize', parameter 'mean' (1 of 4, float): {\"R\": ...} takes");
  fails(R"([{"cast": {"dtype": 6}}])",
        "pipeline[0]: action 'cast', parameter 'dtype' (1 of 2, c10::ScalarType) is a c10::ScalarType, which "
        "a config cannot give");
  fails(R"([{"flip": [0.5]}])",
        "run.json: pipeline[0]: the arguments of action 'flip' are an object of named values");
  fails(R"([{"flip": {}, "crop": {}}])",
        "run.json: pipeline[0]: an action is a name, or an object whose key is the name");
  fails(R"({"flip": {}})", "run.json: pipeline must be an array of steps, not {\"flip\":{}}");
  fails(R"(["flip", {"merge": [["flip"], ["flip"]]}])", "run.json: pipeline[1]: merge makes the batches");
  fails(R"([{"merge": [["flip"]]}])", "run.json: pipeline[0].merge takes an array of two lists of steps");
  fails(R"([{"merge": [["flip"], [{"crop": {}}]]}])",
        "run.json: pipeline[0].merge[1][0]: action 'crop': parameter 'height' (1 of 5, long) is missing");
  fails(R"([{"rebatch": -2}])",
        "run.json: pipeline[0]: 'rebatch' is an integer (-2), expected a whole number from 0");
  fails(R"([{"flip": {}, "with_probability": 2}])", "probability");
  fails(R"([{"flip": {}, "with_probability": "half"}])",
        "run.json: pipeline[0]: with_probability is a number, {\"C\": path} or {\"V\": name}");
  CHECK_THROWS_WITH(bp::Pipeline<bp::ImagesBatch>::from_config(dataset, bp::Config::parse("{}", "run.json")),
                    test::contains("run.json: no setting 'pipeline'"));

  const auto missing = std::filesystem::temp_directory_path() / "batchpipe_no_such_pipeline.json";
  CHECK_THROWS_WITH(bp::Config::load(missing), test::contains("batchpipe_no_such_pipeline.json"));
  const auto broken = write_file("batchpipe_broken_", R"({"pipeline": [ "flip", ]})");
  CHECK_THROWS_WITH(bp::Config::load(broken), test::contains("not valid JSON at byte"));
  std::filesystem::remove(broken);
}

TEST_CASE("expressions in a config's pipeline are evaluated for each batch", "[config]") {
  bp::Dataset<bp::ImagesBatch> dataset(8, {{"images", torch::zeros({8, 1, 2, 2})}});
  const auto config =
      bp::Config::parse(R"({"pipeline": [{"normalize": {"mean": {"R": ["uniform", 0, 1]}, "std": 1}}]})");
  const auto pipeline = bp::Pipeline<bp::ImagesBatch>::from_config(dataset, config);
  std::vector<float> first_values;
  for (std::size_t prefetch : {0u, 4u}) {
    std::vector<float> values;
    auto stream = pipeline.gen_batch({.batch_size = 2, .seed = 5, .prefetch = prefetch});
    while (auto batch = stream.next()) {
      const at::Tensor images = batch->get("images");
      CHECK(torch::all(images == images.flatten()[0]).item<bool>());  // one draw for the batch
      values.push_back(-images.flatten()[0].item<float>());
    }
    REQUIRE(values.size() == 4);
    CHECK(values[0] != values[1]);
    if (first_values.empty()) first_values = values;
    CHECK(values == first_values);
  }
}
