// docs/pipelines-and-prefetch.md: lazy pipelines, concatenation, prefetch, errors, seeds.
#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <iostream>

struct NoisyBatch : bp::Batch<NoisyBatch> {
  ACTION(add_noise)(float scale) {
    auto& values = (*this)["values"];
    values = values + scale * torch::randn(values.sizes(), random().torch_generator());
  }
  ACTION(check_finite)() {
    if (!get("values").isfinite().all().item<bool>()) throw std::domain_error("values are not finite");
  }
  ACTION(sum, .singleton = true)(double& total) { total += get("values").sum().item<double>(); }
};

int main() {
  auto values = torch::ones({1000, 8});
  values[700][3] = std::numeric_limits<float>::infinity();  // one bad item
  bp::Dataset<NoisyBatch> dataset(1000, {{"values", values}});

  // Building runs nothing; each step returns a new pipeline.
  double total = 0;
  auto noisy = dataset.pipeline().add_noise(0.1f);
  auto summed = noisy + dataset.pipeline().sum(total);

  // The same seed gives the same batches for any prefetch and thread count.
  auto first_batch = [&](std::size_t prefetch) {
    return noisy.gen_batch({.batch_size = 100, .seed = 7, .prefetch = prefetch}).next()->get("values");
  };
  const bool same = torch::equal(first_batch(0), first_batch(4));
  std::cout << "same with prefetch 0 and 4: " << same << '\n';

  // An action's exception reaches the caller, naming the action and the batch.
  try {
    (summed.check_finite()).run({.batch_size = 100, .prefetch = 4});
  } catch (const bp::ActionError& e) {
    std::cout << e.what() << '\n';
  }

  // Leaving a loop early stops the batches in flight.
  std::size_t seen = 0;
  for (auto& batch : summed.gen_batch({.batch_size = 50, .n_epochs = bp::endless, .prefetch = 2})) {
    if (++seen == 5 || batch.number() > 100) break;
  }
  auto stats = summed.run({.batch_size = 100, .n_epochs = 3, .shuffle = 1, .prefetch = 2});
  std::cout << stats.batches << " batches, " << stats.items << " items in " << stats.seconds << " s\n";
  return same && stats.batches == 30 && seen == 5 ? 0 : 1;
}
