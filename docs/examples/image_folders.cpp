// docs/image-folders.md: a labelled dataset from a folder of class folders, and from a list file.
#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;

int main() {
  const fs::path root = fs::temp_directory_path() / "batchpipe_docs_image_folders";
  fs::remove_all(root);
  fs::create_directories(root);

  // A small folder of class folders: 8 Fashion-MNIST test images of each of 3 classes, as PNG.
  const auto images = bp::io::read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz");
  const auto labels = bp::io::read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz");
  const std::vector<std::string> names{"t-shirt", "trouser", "pullover"};
  std::ofstream list(root / "list.csv");
  for (int64_t i = 0, written = 0; written < 24; ++i) {
    const int64_t label = labels[i].item<int64_t>();
    if (label >= 3) continue;
    const fs::path file = root / "train" / names[label] / (std::to_string(i) + ".png");
    fs::create_directories(file.parent_path());
    bp::io::write_image(file, images[i].unsqueeze(0));  // [1, 28, 28]: one grey channel
    list << "train/" << names[label] << '/' << i << ".png," << names[label] << '\n';
    ++written;
  }
  list.close();

  // The folder: classes sorted by name, ids the paths below the folder, labels preloaded.
  const auto folder = bp::ImageFolder::from_folder(root / "train");
  std::cout << folder.index.size() << " images, classes:";
  for (const auto& name : folder.classes) std::cout << ' ' << name;
  std::cout << "\nfirst: " << folder.index.id(0) << " (label " << folder.labels[0].item<int64_t>() << ")\n";

  // Its dataset feeds ImagesBatch: load decodes each file once, on the run's threads.
  auto [train, test, validation] = folder.dataset().split(0.75, /*shuffle seed*/ 1);
  int64_t seen = 0;
  for (auto& batch : train.pipeline().load("image").normalize(0, 255).gen_batch({.batch_size = 6})) {
    seen += batch.get("images").size(0);  // [6, 1, 28, 28] floats and their "labels"
  }
  std::cout << "train: " << seen << " images in batches of 6; test: " << test.size() << '\n';

  // The same images from a list file: paths relative to the list, labels as class names.
  const auto listed = bp::ImageFolder::from_list(root / "list.csv");
  std::cout << "list: " << listed.index.size() << " images, " << listed.classes.size() << " classes\n";

  fs::remove_all(root);
  return seen == 18 && listed.classes == folder.classes ? 0 : 1;
}
