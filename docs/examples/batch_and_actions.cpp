// docs/batch-and-actions.md: a batch class, its components and actions, and calls by name.
#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <iostream>

struct ImageBatch : bp::Batch<ImageBatch> {
  // Preprocessing, in place.
  ACTION(normalize)(float mean, float std) { (*this)["images"] = (get("images") - mean) / std; }

  // Augmentation: each batch goes through flip with probability 0.5, drawn from its own stream.
  ACTION(flip, .probability = 0.5)() { (*this)["images"] = get("images").flip({-1}); }

  // Any type can be a component; this one records a value per item.
  ACTION(tag)(std::string prefix) {
    std::vector<std::string> tags;
    for (std::size_t i = 0; i < size(); ++i) tags.push_back(prefix + index().id(i).to_string());
    set("tags", tags);
  }

  // An action may return a new batch instead of changing this one.
  ACTION(first_half)() {
    ImageBatch half;
    half.set("images", get("images").narrow(0, 0, static_cast<int64_t>(size() / 2)));
    return half;
  }
};

int main() {
  bp::Dataset<ImageBatch> dataset(8, {{"images", torch::rand({8, 4, 4}) * 255}});

  // The registry: what the class can do.
  for (const auto& action : ImageBatch::actions().list()) {
    std::cout << action.name << " (probability " << action.probability << ", parameters:";
    for (const auto& type : action.parameters) std::cout << ' ' << type;
    std::cout << ")\n";
  }

  // Fluent, checked at compile time ...
  auto batch = dataset.pipeline().normalize(127.5f, 64.0f).flip().tag("item-").next_batch({.batch_size = 4});
  std::cout << "components:";
  for (const auto& name : batch->components()) std::cout << ' ' << name;
  std::cout << "\nsecond tag: " << batch->item(1).get<std::string>("tags") << '\n';

  // ... or by name, checked at run time (for pipelines read from a configuration file).
  auto by_name = dataset.pipeline().append("normalize", {127.5, 64.0}).append("first_half");
  auto half = by_name.next_batch({.batch_size = 4});
  std::cout << "after first_half: " << half->get("images").size(0) << " rows\n";

  try {
    (void)dataset.pipeline().append("normalize", {std::string("mean")});  // throws: a string is no float
  } catch (const bp::Error& e) {
    std::cout << "error: " << e.what() << '\n';
  }
  return batch->get<std::vector<std::string>>("tags")[1] == "item-1" && half->get("images").size(0) == 2 ? 0
                                                                                                         : 1;
}
