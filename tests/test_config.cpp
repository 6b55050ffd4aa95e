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
                    test::contains("expected a whole number from 0 to 4294967295"));
  CHECK_THROWS_WITH(bp::Config::parse(R"({"n": 300})").get<std::int8_t>("n"),
                    test::contains("expected a whole number from -128 to 127"));
  CHECK_THROWS_WITH(bp::Config::parse(R"({"x": 1e300})").get<float>("x"),
                    test::contains("expected a number within +-3.40282e+38"));
  // Vectors by the same rules, element by element.
  CHECK_THROWS_WITH(bp::Config::parse(R"({"v": [1, 2.5]})").get<std::vector<int>>("v"),
                    test::contains("'v.1' is a number (2.5), expected an integer"));
  CHECK_THROWS_WITH(bp::Config::parse(R"({"v": [-1]})").get<std::vector<std::size_t>>("v"),
                    test::contains("'v.0' is an integer (-1), expected a whole number from 0"));
  CHECK_THROWS_WITH(bp::Config::parse(R"({"v": 3})").get<std::vector<int>>("v"),
                    test::contains("'v' is an integer (3), expected an array"));
  CHECK(bp::Config::parse(R"({"x": 1e300})").get<double>("x") == 1e300);
  CHECK(bp::Config::parse(R"({"n": 18446744073709551615})").get<std::uint64_t>("n") == UINT64_MAX);
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
  // JSON that parses but holds what nlohmann cannot represent: an Error too, cut short.
  std::string huge = "{\"n\": ";
  huge.append(5000, '1');
  huge += '}';
  try {
    (void)bp::Config::parse(huge, "huge.json");
    FAIL("a number of 5000 digits was accepted");
  } catch (const bp::Error& e) {
    CHECK_THAT(e.what(), test::contains("huge.json: not valid JSON"));
    CHECK(std::string(e.what()).size() < 300);
  }
  CHECK_THROWS_WITH(bp::Config::parse("{\"a\": 1,}", "grid.json"),
                    test::contains("grid.json: not valid JSON at byte 9"));
  CHECK_THROWS_WITH(bp::Config::parse("[1, 2]", "list.json"),
                    test::contains("list.json: a config is a JSON object, not an array ([1,2])"));
  CHECK_THROWS_WITH(bp::Config::load("/nonexistent/run.json"), test::contains("/nonexistent/run.json"));
}

TEST_CASE("a config nests at most max_nesting levels, and errors show values cut short", "[config]") {
  // 100,000 levels once overflowed the stack while the error dumped the value.
  std::string deep(100000, '[');
  deep.append(100000, ']');
  std::string in_object = "{\"pipeline\": ";
  in_object += deep;
  in_object += '}';
  CHECK_THROWS_WITH(bp::Config::parse(in_object, "deep.json"),
                    test::contains("deep.json: the config nests deeper than 128 levels"));
  CHECK_THROWS_WITH(bp::Config::parse(deep, "deep.json"), test::contains("nests deeper than 128"));
  std::string within(bp::Config::max_nesting - 1, '[');
  within.append(bp::Config::max_nesting - 1, ']');
  std::string within_object = "{\"a\": ";
  within_object += within;
  within_object += '}';
  CHECK(bp::Config::parse(within_object).contains("a"));
  bp::Config config;
  config.set("a", bp::Config::json::parse(within));
  CHECK_THROWS_WITH(config.set("x.y", bp::Config::json::parse(within)),
                    test::contains("the value at 'x.y' nests deeper than 128"));

  // A long value in a message is an excerpt, not the whole value.
  std::string wide = "[";
  for (int i = 0; i < 100000; ++i) wide += "1,";
  wide += "1]";
  try {
    (void)bp::Config::parse(wide, "wide.json");
    FAIL("a config that is an array was accepted");
  } catch (const bp::Error& e) {
    CHECK(std::string(e.what()).size() < 200);
    CHECK_THAT(e.what(), test::contains("not an array ([1,1,1"));
  }
  // An excerpt cut inside a UTF-8 character is still text, not nlohmann's exception.
  std::string cyrillic;
  for (int i = 0; i < 100; ++i) cyrillic += "ж";
  std::string text = "{\"a\": \"";
  text += cyrillic;
  text += "\"}";
  CHECK_THROWS_WITH(bp::Config::parse(text).get<int>("a"), test::contains("'a' is a string"));
  CHECK_NOTHROW(bp::detail::json_excerpt(bp::Config::json(cyrillic), 41));
}
