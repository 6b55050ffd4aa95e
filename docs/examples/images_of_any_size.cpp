// docs/images-of-any-size.md: photographs of many sizes in one batch (an ImageList), made one
// size by random_resized_crop for training and by resize_shorter and center_crop for evaluation.
#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>

#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

int main() {
  const fs::path root = fs::temp_directory_path() / "batchpipe_docs_images_of_any_size";
  fs::remove_all(root);
  fs::create_directories(root);

  // Six images of six sizes, as a folder of photographs holds them.
  const std::vector<std::pair<int64_t, int64_t>> sizes{{480, 640}, {640, 480},  {300, 300},
                                                       {90, 1200}, {1024, 768}, {37, 53}};
  std::vector<bp::Id> ids;
  std::vector<fs::path> paths;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto [h, w] = sizes[i];
    const auto rows = torch::linspace(0, 255, h).view({1, h, 1}),
               columns = torch::linspace(0, 255, w).view({1, 1, w});
    const auto image =
        torch::cat({rows.expand({1, h, w}), columns.expand({1, h, w}), (rows + columns).div(2)}, 0);
    ids.push_back("image" + std::to_string(i));
    paths.push_back(root / (ids.back().to_string() + ".png"));
    bp::io::write_image(paths.back(), image.to(torch::kByte));
  }
  const bp::Dataset<bp::ImagesBatch> photos(bp::Index::from_files(ids, paths));

  // load_images: one image per item, each of its own size.
  auto loaded = photos.pipeline().load_images().next_batch({.batch_size = 6});
  const bp::ImageList list = loaded->get<bp::ImageList>("images");
  std::cout << "loaded:";
  for (std::size_t i = 0; i < list.size(); ++i) std::cout << ' ' << list.size_of(i);
  std::cout << '\n';

  // Training: a random part of each image, resized to 224 x 224, flipped, normalized.
  const std::vector<float> mean{0.485f, 0.456f, 0.406f}, std{0.229f, 0.224f, 0.225f};
  auto train = photos.pipeline().load_images().random_resized_crop(224, 224).flip().normalize_channels(
      mean, std, 1 / 255.f);
  // Evaluation: the shorter side to 256, then the middle 224 x 224.
  auto evaluate =
      photos.pipeline().load_images().resize_shorter(256).center_crop(224, 224).normalize_channels(mean, std,
                                                                                                   1 / 255.f);

  const auto train_batch = train.next_batch({.batch_size = 6, .seed = 1})->get("images");
  const auto eval_batch = evaluate.next_batch({.batch_size = 6})->get("images");
  std::cout << "train: " << train_batch.sizes() << ' ' << train_batch.dtype() << '\n';
  std::cout << "evaluate: " << eval_batch.sizes() << ' ' << eval_batch.dtype() << '\n';

  fs::remove_all(root);
  return train_batch.sizes() == eval_batch.sizes() && train_batch.size(0) == 6 ? 0 : 1;
}
