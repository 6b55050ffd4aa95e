// docs/pipelines-from-configs.md: a pipeline written in JSON, loaded, and compared with the same
// pipeline written in code.
#include <batchpipe/batchpipe.hpp>

#include <iostream>

int main() {
  const auto config = bp::Config::parse(R"({
    "data": {"mean": 0.5, "std": 0.25},
    "pipeline": [
      {"normalize": {"mean": {"C": "data.mean"}, "std": {"C": "data.std"}, "scale": 0.00392156862745098}},
      {"flip": {"p": 1}},
      {"crop": {"height": 3, "width": 3, "padding": 1, "p": 0}}
    ]
  })",
                                        "run.json");
  const at::Tensor images = at::randint(0, 256, {8, 1, 4, 4}).to(at::kByte);
  bp::Dataset<bp::ImagesBatch> dataset(8, {{"images", images}});

  const auto loaded = bp::Pipeline<bp::ImagesBatch>::from_config(dataset, config);
  const auto written = dataset.pipeline().normalize(0.5f, 0.25f, 1 / 255.0f).flip(1.0).crop(3, 3, 1, 0.0);

  auto a = loaded.gen_batch({.batch_size = 4, .seed = 7});
  auto b = written.gen_batch({.batch_size = 4, .seed = 7});
  bool same = true;
  while (auto x = a.next()) same = same && at::allclose(x->get("images"), b.next()->get("images"));
  std::cout << "actions:";
  for (const auto& name : loaded.action_names()) std::cout << ' ' << name;
  std::cout << (same ? "\nthe loaded pipeline does what the written one does\n" : "\nthey differ\n");

  // A mistake is found when the pipeline is built, and the message says where.
  try {
    bp::Pipeline<bp::ImagesBatch>::from_config(
        dataset, bp::Config::parse(R"({"pipeline": ["flip", {"crop": {"hieght": 3}}]})", "typo.json"));
    return 1;
  } catch (const bp::Error& e) {
    std::cout << e.what() << '\n';
  }
  return same ? 0 : 1;
}
