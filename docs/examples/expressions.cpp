// docs/expressions.md: action arguments evaluated for each batch (B, V, C, F, R, ids).
#include <batchpipe/batchpipe.hpp>

#include <iostream>
#include <random>
#include <vector>

struct Points : bp::Batch<Points> {
  ACTION(measure)() { set("count", static_cast<int>(size())); }

  ACTION(shift, .params = "offset, jitter, count, scale")
  (double offset, float jitter, int count, float scale) {
    (*this)["x"] = (get("x") + offset + jitter) * scale;
    std::cout << "batch " << number() << ": " << count << " items, offset " << offset << ", jitter " << jitter
              << ", scale " << scale << '\n';
  }

  ACTION(report)(const std::vector<bp::Id>& ids) {
    std::cout << "batch " << number() << " holds ids";
    for (const auto& id : ids) std::cout << ' ' << id.to_string();
    std::cout << '\n';
  }
};

int main() {
  bp::Dataset<Points> dataset(6, {{"x", at::zeros({6})}});
  const auto pipeline = dataset.pipeline()
                            .init_variable("offset", 1.0)
                            .measure()
                            .shift(bp::V("offset"), bp::R(std::uniform_real_distribution<float>(0, 0.01f)),
                                   bp::B("count"), bp::C("scale"))
                            .report(bp::ids())
                            .with_config(bp::Config::parse(R"({"scale": 10})"));
  pipeline.run({.batch_size = 4, .shuffle = 1});

  pipeline.variable<double>("offset").set(2.0);  // read again by the next run
  auto batch = pipeline.gen_batch({.batch_size = 6}).next();
  const double first = batch->get("x")[0].item<double>();
  std::cout << "after the second run: x[0] = " << first << '\n';
  return first >= 20.0 && first < 20.2 ? 0 : 1;
}
