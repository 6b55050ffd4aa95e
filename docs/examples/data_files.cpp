// docs/data-files.md: reading and writing IDX, .npy, CSV and image files, and a pipeline that
// starts from files.
#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;

int main() {
  const fs::path folder = fs::temp_directory_path() / "batchpipe_docs_data";
  fs::create_directories(folder);

  // IDX: the Fashion-MNIST files as Debian installs them.
  auto labels = bp::io::read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz");
  std::cout << "labels: " << labels.sizes() << ' ' << labels.dtype() << '\n';

  // .npy, for data to and from Python.
  bp::io::write_npy(folder / "features.npy", torch::rand({5, 3}));
  std::cout << "features.npy: " << bp::io::read_npy(folder / "features.npy").sizes() << '\n';

  // CSV with a header row, columns by name.
  std::ofstream(folder / "table.csv") << "name,height,weight\nann,1.70,61\nbob,1.82,80\n";
  auto table = bp::io::read_csv(folder / "table.csv", {"height", "weight"});
  std::cout << "mean height: " << table["height"].mean().item<float>() << '\n';

  // Every reader says which file is wrong and how.
  std::ofstream(folder / "broken.npy") << "not numpy";
  try {
    bp::io::read_npy(folder / "broken.npy");
  } catch (const bp::FileError& e) {
    std::cout << "error: " << e.what() << '\n';
  }

  // A pipeline that starts from files: dump images as PNG, then load them through a files index.
  bp::Dataset<bp::ImagesBatch> generated(4,
                                         {{"images", torch::randint(0, 255, {4, 3, 8, 8}).to(torch::kByte)}});
  generated.pipeline().dump(folder / "png", "png").run({.batch_size = 2});
  bp::Dataset<bp::ImagesBatch> files(bp::Index::from_glob((folder / "png" / "*.png").string()));
  auto batch = files.pipeline().load("image").normalize(0.5f, 0.25f, 1 / 255.f).next_batch({.batch_size = 4});
  std::cout << "loaded " << batch->get("images").sizes() << " from " << files.index().path(0).filename()
            << " ...\n";

  fs::remove_all(folder);
  return batch->get("images").size(0) == 4 && labels.size(0) == 10000 ? 0 : 1;
}
