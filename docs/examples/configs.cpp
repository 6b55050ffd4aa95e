// docs/configs.md: a config read from JSON, settings by dotted path, a grid of overrides.
#include <batchpipe/batchpipe.hpp>

#include <cstdint>
#include <filesystem>
#include <iostream>

int main() {
  // Usually Config::load("run.json"); the text names the source in errors.
  const auto base = bp::Config::parse(R"({
    "model": {"hidden": 256, "activation": "relu"},
    "optimizer": {"lr": 0.001},
    "epochs": 3
  })",
                                      "run.json");

  const auto hidden = base.get<int64_t>("model.hidden");
  const double lr = base.get<double>("optimizer.lr");
  const int batch_size = base.get_or("batch_size", 128);  // a default for what is not there
  std::cout << "hidden " << hidden << ", lr " << lr << ", batch " << batch_size << '\n';

  // A grid: each point laid over the base config.
  for (const int64_t h : {64, 256}) {
    for (const double rate : {1e-3, 1e-2}) {
      bp::Config point;
      point.set("model.hidden", h).set("optimizer.lr", rate);
      const bp::Config run = base.merged(point);
      std::cout << run.dump(-1) << '\n';
    }
  }

  // Errors say where and what: the source, the path, the types.
  try {
    (void)base.get<int>("model.activation");
  } catch (const bp::Error& e) {
    std::cout << e.what() << '\n';  // run.json: 'model.activation' is a string ("relu"), expected an integer
  }

  const auto file = std::filesystem::temp_directory_path() / "batchpipe_configs_example.json";
  base.save(file);
  const bool same = bp::Config::load(file) == base;
  std::filesystem::remove(file);
  return same ? 0 : 1;
}
