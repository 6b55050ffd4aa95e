// docs/index-and-dataset.md: indexes, files indexes, datasets, splits and batches.
#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>

struct PointsBatch : bp::Batch<PointsBatch> {};

int main() {
  // An index of 10 items, ids 0..9, and data with one row per item.
  auto points = torch::arange(20, torch::kFloat).reshape({10, 2});
  bp::Dataset<PointsBatch> dataset(bp::Index(10), {{"points", points}});

  // Split 70 / 20 / 10, shuffled with seed 42. The parts share the data.
  auto [train, test, validation] = dataset.split({.train = 0.7, .test = 0.2, .validation = 0.1}, 42);
  std::cout << "train " << train.size() << ", test " << test.size() << ", validation " << validation.size()
            << '\n';

  // Two epochs of batches of 3, shuffled; the last batch of each epoch has the remaining item.
  for (auto& batch : train.gen_batch({.batch_size = 3, .n_epochs = 2, .shuffle = 1})) {
    std::cout << "batch " << batch.number() << " (epoch " << batch.epoch() << "): ids";
    for (std::size_t i = 0; i < batch.size(); ++i) std::cout << ' ' << batch.item(i).id();
    std::cout << ", first point " << batch["points"][0][0].item<float>() << '\n';
  }

  // String ids, and a files index made from a folder.
  bp::Index names(std::vector<std::string>{"cat", "dog", "eel"});
  std::cout << "dog is at position " << names.position("dog") << '\n';

  const auto folder = std::filesystem::temp_directory_path() / "batchpipe_docs_files";
  std::filesystem::create_directories(folder);
  for (auto name : {"a.txt", "b.txt", "c.csv"}) std::ofstream(folder / name) << name;
  auto files = bp::Index::from_glob((folder / "*.txt").string());
  for (std::size_t i = 0; i < files.size(); ++i) std::cout << files.id(i) << " -> " << files.path(i) << '\n';
  std::filesystem::remove_all(folder);

  const bool ok = train.size() == 7 && files.size() == 2 && names.position("dog") == 1;
  return ok ? 0 : 1;
}
