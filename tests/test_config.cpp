// Config: dotted paths, typed reads with clear errors, JSON in and out, merging.
#include "support.hpp"

#include <batchpipe/core/config.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

const char* const kRun = R"({
  "model": {"hidden": 256, "activation": "relu", "dropout": 0.1, "layers": [784, 256, 10]},
  "optimizer": {"lr": 0.001, "decay": false},
  "epochs": 3
})";

}  // namespace

TEST_CASE("a config reads nested settings by dotted path, with their types checked", "[config]") {
  const auto config = bp::Config::parse(kRun, "run.json");
  CHECK(config.get<int64_t>("model.hidden") == 256);
  CHECK(config.get<int>("epochs") == 3);
  CHECK(config.get<double>("optimizer.lr") == 0.001);
  CHECK(config.get<float>("model.hidden") == 256.0f);  // an integer is a number
  CHECK(config.get<std::string>("model.activation") == "relu");
  CHECK_FALSE(config.get<bool>("optimizer.decay"));
  CHECK(config.get<int>("model.layers.2") == 10);
  CHECK(config.get<std::vector<int>>("model.layers") == std::vector<int>{784, 256, 10});
  CHECK(config.get_or("model.depth", 2) == 2);
  CHECK(config.get_or("model.activation", "tanh") == "relu");
  CHECK(config.contains("model.dropout"));
  CHECK_FALSE(config.contains("model.layers.3"));
  CHECK_FALSE(config.contains("epochs.x"));
  CHECK(config.at("model").get<int>("hidden") == 256);
  CHECK(config.get<bp::Config>("optimizer").get<double>("lr") == 0.001);

  CHECK_THROWS_WITH(config.get<int>("model.dropout"),
                    test::contains("run.json: 'model.dropout' is a number (0.1), expected an integer"));
  CHECK_THROWS_WITH(config.get<int>("model.activation"),
                    test::contains("'model.activation' is a string (\"relu\"), expected an integer"));
  CHECK_THROWS_WITH(config.get<std::string>("epochs"),
                    test::contains("is an integer (3), expected a string"));
  CHECK_THROWS_WITH(config.get<bool>("epochs"), test::contains("expected true or false"));
  CHECK_THROWS_WITH(config.get<int>("model.hiden"),
                    test::contains("run.json: no setting 'model.hiden' (keys at 'model': "));
  CHECK_THROWS_WITH(config.get<int>("epochs.x"), test::contains("('epochs' is an integer (3))"));
  CHECK_THROWS_WITH(config.get_or("model.activation", 1), test::contains("expected an integer"));
  CHECK_THROWS_WITH(config.at("epochs"), test::contains("'epochs' is an integer (3), not an object"));
  CHECK_THROWS_WITH(bp::Config::parse(R"({"n": -1})").get<unsigned>("n"),
                    test::contains("expected a non-negative integer"));
  CHECK_THROWS_WITH(bp::Config::parse(R"({"n": 300})").get<std::int8_t>("n"),
                    test::contains("expected a smaller integer"));
}

TEST_CASE("a config is written and merged, and round-trips through JSON files", "[config]") {
  auto config = bp::Config::parse(kRun);
  config.set("model.hidden", 512).set("data.augment.flip", 0.5);
  CHECK(config.get<int>("model.hidden") == 512);
  CHECK(config.get<double>("data.augment.flip") == 0.5);
  CHECK_THROWS_WITH(config.set("epochs.count", 1),
                    test::contains("cannot set 'epochs.count': 'epochs' is an integer"));

  const auto point = bp::Config::parse(R"({"model": {"hidden": 64}, "optimizer": {"lr": 0.01}})");
  const auto merged = config.merged(point);
  CHECK(merged.get<int>("model.hidden") == 64);
  CHECK(merged.get<std::string>("model.activation") == "relu");  // kept beside the override
  CHECK(merged.get<double>("optimizer.lr") == 0.01);
  CHECK_FALSE(merged.get<bool>("optimizer.decay"));

  const auto file = std::filesystem::temp_directory_path() / "batchpipe_test_config.json";
  merged.save(file);
  CHECK(bp::Config::load(file) == merged);
  CHECK(bp::Config::load(file).source() == file.string());
  std::filesystem::remove(file);
  CHECK(bp::Config::parse(merged.dump(-1)) == merged);
}

TEST_CASE("a config that is not one says where", "[config]") {
  CHECK_THROWS_WITH(bp::Config::parse("{\"a\": 1,}", "grid.json"),
                    test::contains("grid.json: not valid JSON at byte 9"));
  CHECK_THROWS_WITH(bp::Config::parse("[1, 2]", "list.json"),
                    test::contains("list.json: a config is a JSON object, not an array ([1,2])"));
  CHECK_THROWS_WITH(bp::Config::load("/nonexistent/run.json"), test::contains("/nonexistent/run.json"));
}
