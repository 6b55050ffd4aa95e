#pragma once
// W3 of the design brief: photographs from a folder of class folders (scripts/make-w3-folder.py),
// decoded, cut by a random resized crop to 224 x 224, flipped with p = 0.5 and normalized with
// ImageNet's per-channel mean and std into float batches of 256, shuffled, one epoch. batchpipe's
// pipeline and the C++ peers main.cpp runs beside it, each with a budget of `threads` cores:
//   hand_loop:      what a program without a pipeline writes: threads each take every n-th file
//                   of a batch, decode it whole (libjpeg-turbo, libspng: the same decoders), cut
//                   the crop and resize it with LibTorch's antialiased bilinear interpolation,
//                   flip it; then the batch is normalized.
//   decode_ceiling: every file decoded as batchpipe decodes it (at the same DCT scale), and
//                   nothing else: the ceiling of a pipeline that decodes whole images.
// torchvision's DataLoader (PIL) is measured by scripts/w3-torchvision.py.

#include <batchpipe/batchpipe.hpp>

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace benchmark_photos {

inline const std::vector<float> imagenet_mean{0.485f, 0.456f, 0.406f}, imagenet_std{0.229f, 0.224f, 0.225f};
inline constexpr int64_t side = 224;

/// One W3 epoch's settings.
struct Epoch {
  std::size_t batch_size = 256;
  std::size_t threads = 1;  // the budget
  int64_t min_side = 0;     // decode JPEGs at the smallest DCT scale keeping this side (0: whole)
};

inline double seconds_of(const std::function<void()>& work) {
  const auto start = std::chrono::steady_clock::now();
  work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The process's resident memory now, MiB (Linux; 0 elsewhere).
inline long resident_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE) / (1024 * 1024);
}

/// W3's pipeline over `folder`, as a user writes it.
template <class B>
bp::Pipeline<B> pipeline(const bp::Dataset<B>& files, int64_t min_side) {
  return files.pipeline()
      .load_images(3, min_side, min_side)
      .random_resized_crop(side, side)
      .flip()
      .normalize_channels(imagenet_mean, imagenet_std, 1 / 255.f);
}

/// batchpipe: one epoch of W3 at `prefetch`, items/s; `peak_mib` the most resident memory seen
/// at a batch's arrival.
inline double batchpipe_epoch(const bp::ImageFolder& folder, const Epoch& e, std::size_t prefetch,
                              long& peak_mib) {
  auto run = pipeline(folder.dataset(), e.min_side);
  double checksum = 0;
  std::size_t items = 0;
  const double seconds = seconds_of([&] {
    for (auto& batch : run.gen_batch(
             {.batch_size = e.batch_size, .shuffle = 1, .prefetch = prefetch, .threads = e.threads})) {
      items += batch.size();
      checksum += batch.get("images")[0][0][0][0].item<double>();
      peak_mib = std::max(peak_mib, resident_mib());
    }
  });
  return checksum == checksum ? static_cast<double>(items) / seconds : 0;
}

/// The hand-written loop: each batch's files split over std::threads, each decoded whole, cut
/// and resized with LibTorch, flipped; then the batch normalized.
inline double hand_loop_epoch(const bp::ImageFolder& folder, const Epoch& e) {
  const std::size_t n = folder.index.size();
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  bp::Random(1).shuffle(order);
  const auto mean = torch::tensor(imagenet_mean).view({1, 3, 1, 1});
  const auto deviation = torch::tensor(imagenet_std).view({1, 3, 1, 1});
  namespace F = torch::nn::functional;
  const auto resize = F::InterpolateFuncOptions()
                          .size(std::vector<int64_t>{side, side})
                          .mode(torch::kBilinear)
                          .align_corners(false)
                          .antialias(true);
  double checksum = 0;
  const double seconds = seconds_of([&] {
    for (std::size_t start = 0; start < n; start += e.batch_size) {
      const std::size_t count = std::min(e.batch_size, n - start);
      auto batch = torch::empty({static_cast<int64_t>(count), 3, side, side}, torch::kFloat);
      std::vector<std::thread> threads;
      for (std::size_t w = 0; w < e.threads; ++w) {
        threads.emplace_back([&, w] {
          at::set_num_threads(1);
          for (std::size_t i = w; i < count; i += e.threads) {
            bp::Random rng(start + i);
            const auto image = bp::io::decode_image_file(folder.index.path(order[start + i]), {.channels = 3})
                                   .permute({2, 0, 1});
            const auto box = bp::detail::random_resized_box(image.size(1), image.size(2), 0.08, 1.0, 3.0 / 4,
                                                            4.0 / 3, rng);
            const auto crop = image.narrow(1, box.top, box.height).narrow(2, box.left, box.width);
            auto resized = F::interpolate(crop.unsqueeze(0).to(torch::kFloat), resize);
            if (rng.bernoulli(0.5)) resized = resized.flip({-1});
            batch[static_cast<int64_t>(i)].copy_(resized[0]);
          }
        });
      }
      for (auto& thread : threads) thread.join();
      batch = batch.div_(255).sub_(mean).div_(deviation);
      checksum += batch[0][0][0][0].item<double>();
    }
  });
  return checksum == checksum ? static_cast<double>(n) / seconds : 0;
}

/// Every file decoded as batchpipe's load_images decodes it, on `threads` cores, and nothing else.
inline double decode_ceiling_epoch(const bp::ImageFolder& folder, const Epoch& e) {
  const std::size_t n = folder.index.size();
  std::vector<int64_t> pixels(n);
  tbb::task_arena arena(static_cast<int>(e.threads));
  const double seconds = seconds_of([&] {
    arena.execute([&] {
      tbb::parallel_for(std::size_t{0}, n, [&](std::size_t i) {
        pixels[i] =
            bp::io::decode_image_file(folder.index.path(i),
                                      {.channels = 3, .min_width = e.min_side, .min_height = e.min_side})
                .numel();
      });
    });
  });
  return static_cast<double>(n) / seconds;
}

/// Writes a JPEG of 6 files: each whole (resized to 224 x 224) above two random resized crops of
/// it (with their flips), as W3's pipeline makes them: the picture in docs/images-of-any-size.md.
inline void write_gallery(const bp::ImageFolder& folder, const std::filesystem::path& file) {
  std::vector<std::size_t> picked;
  const std::size_t step = std::max<std::size_t>(1, folder.index.size() / 6);
  for (std::size_t i = 0; i < folder.index.size() && picked.size() < 6; i += step) picked.push_back(i);
  const bp::Dataset<bp::ImagesBatch> files(folder.index.subset(picked));
  const auto whole =
      files.pipeline().load_images().resize(side, side).next_batch({.batch_size = picked.size()});
  const auto crops = [&](std::uint64_t seed) {
    return files.pipeline()
        .load_images()
        .random_resized_crop(side, side)
        .flip()
        .next_batch({.batch_size = picked.size(), .seed = seed});
  };
  std::vector<torch::Tensor> lines;
  for (const auto& row : {whole->get("images"), crops(1)->get("images"), crops(2)->get("images")}) {
    lines.push_back(torch::cat(row.unbind(0), 2));  // the items side by side
  }
  bp::io::write_image(file, torch::cat(lines, 1));
  std::printf("wrote %s\n", file.c_str());
}

}  // namespace benchmark_photos
