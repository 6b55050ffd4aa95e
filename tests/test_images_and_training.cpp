// ImagesBatch actions, per-item parallelism, pipeline variables, training helpers, checkpoints,
// and a short end-to-end run on Fashion-MNIST.
#include "support.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

namespace fs = std::filesystem;

namespace {

using Net = bp::TorchModel<torch::nn::Sequential, torch::optim::Adam>;

struct Trainable : bp::ImagesBatchBase<Trainable> {
  inline static int64_t hidden = 16;
  MODEL(net)() {
    torch::manual_seed(0);
    torch::nn::Sequential net(torch::nn::Flatten(), torch::nn::Linear(784, hidden), torch::nn::ReLU(),
                              torch::nn::Linear(hidden, 10));
    return Net{net, torch::optim::Adam(net->parameters(), torch::optim::AdamOptions(2e-3))};
  }
  ACTION(train, .model = "net", .singleton = true)(Net& model) {
    variable<std::vector<double>>("loss").update([&](auto& losses) {
      losses.push_back(bp::train_step(model.module, model.optimizer, get("images"), get("labels")));
    });
  }
  ACTION(evaluate, .model = "net")(Net& model) {
    bp::evaluate(model.module, get("images"), get("labels"), variable<bp::Accuracy>("accuracy"));
  }
  ACTION(count)() {  // not a singleton: runs on several batches at once
    variable<int64_t>("items").update([&](int64_t& n) { n += static_cast<int64_t>(size()); });
  }
};

// Batches whose images can be made non-contiguous, which sends normalize, flip and crop down
// their tensor-operation path instead of the one-pass kernels.
struct StridedImages : bp::ImagesBatchBase<StridedImages> {
  ACTION(strided)() {
    auto& x = (*this)["images"];
    x = x.transpose(-1, -2).contiguous().transpose(-1, -2);
  }
};

// Images that carry what their bytes do not: a gradient to track, a lazy conjugation.
struct FlaggedImages : bp::ImagesBatchBase<FlaggedImages> {
  ACTION(conjugated)() {
    auto& x = (*this)["images"];
    x = x.conj();
  }
  ACTION(needing_grad)() {
    auto& x = (*this)["images"];
    x = x.detach().requires_grad_();
  }
};

// Reads the images between actions, as a user's action would: what it gets is recorded.
struct ReadImages : bp::ImagesBatchBase<ReadImages> {
  inline static std::atomic<int> float_reads{0}, other_reads{0};
  ACTION(read)() { ++(get("images").scalar_type() == torch::kFloat ? float_reads : other_reads); }
  ACTION(set_rows)(int64_t rows) { (*this)["images"] = torch::zeros({rows, 1, 4, 4}, torch::kByte); }
};

bp::Dataset<bp::ImagesBatch> ramps(int64_t n) {
  // Every image is the same left-to-right ramp 0..7, so flips and shifts are easy to see.
  auto images = torch::arange(8, torch::kFloat).repeat({n, 1, 8, 1});  // [n, 1, 8, 8]
  return bp::Dataset<bp::ImagesBatch>(static_cast<std::size_t>(n), {{"images", images}});
}

bp::Dataset<Trainable> fashion(const std::string& prefix, int64_t count) {
  const fs::path folder = "/usr/share/datasets/fashion-mnist";
  auto images = bp::io::read_idx(folder / (prefix + "-images-idx3-ubyte.gz")).narrow(0, 0, count);
  auto labels =
      bp::io::read_idx(folder / (prefix + "-labels-idx1-ubyte.gz")).narrow(0, 0, count).to(torch::kLong);
  return bp::Dataset<Trainable>(static_cast<std::size_t>(count), {{"images", images}, {"labels", labels}});
}

}  // namespace

TEST_CASE("flip turns about p of the items, the same ones for any thread count", "[images]") {
  auto flipped_items = [](std::size_t prefetch, std::size_t threads) {
    std::vector<int64_t> flags;
    for (auto& batch : ramps(2000).pipeline().flip(0.3).gen_batch(
             {.batch_size = 100, .seed = 5, .prefetch = prefetch, .threads = threads})) {
      auto first_column = batch.get("images").select(3, 0).select(2, 0).squeeze(1);  // 7 when flipped, else 0
      for (int64_t i = 0; i < first_column.size(0); ++i) flags.push_back(first_column[i].item<float>() == 7);
    }
    return flags;
  };
  const auto reference = flipped_items(0, 1);
  const auto count = std::count(reference.begin(), reference.end(), 1);
  CHECK(count > 520);  // 600 expected; 4 standard deviations either side
  CHECK(count < 680);
  CHECK(reference == flipped_items(4, 2));
  CHECK(reference == flipped_items(2, 4));
}

TEST_CASE("crop pads, then cuts at a random place with probability p", "[images]") {
  auto batch = ramps(3000).pipeline().crop(8, 8, 2, 1.0).next_batch({.batch_size = 3000, .seed = 1});
  const auto images = batch->get("images");
  REQUIRE(images.sizes() == std::vector<int64_t>{3000, 1, 8, 8});
  // Each item is the ramp shifted by dx in [-2, 2], with zeros where the padding shows.
  std::map<int64_t, int> shifts;
  for (int64_t i = 0; i < 3000; ++i) {
    const auto row = images[i][0][4];
    const auto first_nonzero_value = row.nonzero().numel() ? row[row.nonzero()[0][0]].item<float>() : 0;
    const int64_t zeros_on_left = row.nonzero().numel() ? row.nonzero()[0][0].item<int64_t>() : 0;
    shifts[static_cast<int64_t>(first_nonzero_value) - zeros_on_left]++;
  }
  CHECK(shifts.size() == 5);                      // dx = -2 .. 2 all seen
  for (auto [shift, n] : shifts) CHECK(n > 450);  // 600 each expected (value 0 at the left edge folds in)

  auto crops = [](std::size_t prefetch, std::size_t threads) {
    std::vector<at::Tensor> out;
    for (auto& b : ramps(200)
                       .pipeline()
                       .crop(8, 8, 2, 0.5)
                       .gen_batch({.batch_size = 32, .seed = 4, .prefetch = prefetch, .threads = threads})) {
      out.push_back(b.get("images"));
    }
    return torch::cat(out);
  };
  CHECK(torch::equal(crops(0, 1), crops(4, 4)));  // the same crops for any prefetch and thread count

  auto centred = ramps(50).pipeline().crop(6, 6, 0, 0.0).next_batch({.batch_size = 50});
  CHECK(torch::equal(centred->get("images")[0][0][0], torch::arange(1, 7, torch::kFloat)));
  CHECK_THROWS_WITH(ramps(4).pipeline().crop(20, 20, 2).run({}),
                    test::contains("crop: 20x20 does not fit in [4, 1, 12, 12]"));
}

TEST_CASE("normalize, flip and crop give the same batches on their one-pass and tensor paths", "[images]") {
  // Uneven sizes and several channels, uint8 like Fashion-MNIST's, random values.
  torch::manual_seed(3);
  const auto images = torch::randint(0, 256, {64, 3, 9, 7}).to(torch::kByte);
  bp::Dataset<StridedImages> dataset(64, {{"images", images}});
  const bp::RunOptions options{.batch_size = 64, .seed = 11};
  for (const int64_t padding : {0, 2, 5}) {
    CAPTURE(padding);
    auto one_pass =
        dataset.pipeline().normalize(0.2f, 0.3f, 1 / 255.f).flip(0.5).crop(8, 6, padding).next_batch(options);
    auto tensor_ops = dataset.pipeline()
                          .strided()
                          .normalize(0.2f, 0.3f, 1 / 255.f)
                          .strided()
                          .flip(0.5)
                          .strided()
                          .crop(8, 6, padding)
                          .next_batch(options);
    REQUIRE(one_pass->get("images").sizes() == std::vector<int64_t>{64, 3, 8, 6});
    CHECK(torch::allclose(one_pass->get("images"), tensor_ops->get("images"), 0, 1e-6));
    // flip and crop move data only: exactly the same once normalize is out of the way.
    auto moved = dataset.pipeline().flip(0.5).crop(8, 6, padding).next_batch(options);
    auto moved_by_tensor_ops =
        dataset.pipeline().strided().flip(0.5).strided().crop(8, 6, padding).next_batch(options);
    CHECK(torch::equal(moved->get("images"), moved_by_tensor_ops->get("images")));
  }
  CHECK_THROWS_WITH(dataset.pipeline().crop(4, 4, -1).run({}),
                    test::contains("crop: padding -1 is negative"));
}

TEST_CASE("dump writes inside its folder only: an id that is not a plain file name is an error", "[images]") {
  const auto scratch =
      std::filesystem::temp_directory_path() / ("batchpipe_dump_" + std::to_string(::getpid()));
  const auto folder = scratch / "out";
  std::filesystem::create_directories(scratch);
  for (const std::string bad : {"../escaped", "/tmp/batchpipe_absolute", "sub/dir"}) {
    CAPTURE(bad);
    bp::Dataset<bp::ImagesBatch> dataset(bp::Index(std::vector<std::string>{"fine", bad}),
                                         {{"images", torch::zeros({2, 2, 2})}});
    CHECK_THROWS_WITH(
        dataset.pipeline().dump(folder).run({.batch_size = 2}),
        test::contains("dump: item '" + bad + "' (position 1) has an id that is not a plain file name"));
    CHECK_FALSE(std::filesystem::exists(folder));  // nothing written, not even the good item
  }
  CHECK_FALSE(std::filesystem::exists(scratch / "escaped.npy"));
  bp::Dataset<bp::ImagesBatch> plain(bp::Index(std::vector<std::string>{"a"}),
                                     {{"images", torch::zeros({1, 2, 2})}});
  CHECK_THROWS_WITH(plain.pipeline().dump(folder, "x/../../png").run({.batch_size = 1}),
                    test::contains("unknown file format 'x/../../png'"));
  const std::string control = std::string("bell\a");
  bp::Dataset<bp::ImagesBatch> strange(bp::Index(std::vector<std::string>{"a/" + control}),
                                       {{"images", torch::zeros({1, 2, 2})}});
  CHECK_THROWS_WITH(strange.pipeline().dump(folder).run({.batch_size = 1}), test::contains("'a/bell\\x07'"));
  std::filesystem::remove_all(scratch);
}

TEST_CASE("flip and crop keep a gradient and a conjugation whatever the memory layout", "[images]") {
  // The one-pass kernels copy bytes: they once dropped both on contiguous tensors only.
  const bp::RunOptions options{.batch_size = 4};
  const auto complex = torch::randn({4, 2, 5, 6}, torch::kComplexFloat);
  bp::Dataset<FlaggedImages> complex_data(4, {{"images", complex}});
  const auto flipped = complex_data.pipeline().conjugated().flip(1.0).next_batch(options)->get("images");
  CHECK(torch::equal(flipped.resolve_conj(), complex.conj().flip(-1).resolve_conj()));
  const auto cropped =
      complex_data.pipeline().conjugated().crop(3, 4, 0, 0.0).next_batch(options)->get("images");
  CHECK(
      torch::equal(cropped.resolve_conj(), complex.conj().narrow(-2, 1, 3).narrow(-1, 1, 4).resolve_conj()));

  const auto real = torch::randn({4, 2, 5, 6});
  bp::Dataset<FlaggedImages> real_data(4, {{"images", real}});
  const auto tracked = real_data.pipeline().needing_grad().flip(1.0).crop(3, 4, 0, 0.0).next_batch(options);
  CHECK(tracked->get("images").requires_grad());
  CHECK(torch::equal(tracked->get("images").detach(), real.flip(-1).narrow(-2, 1, 3).narrow(-1, 1, 4)));
}

TEST_CASE("a batch large enough to split over the arena gives what one thread gives", "[images][parallel]") {
  // Batches of 300 and 100 items of 2 x 28 x 28 uint8: a batch of 300's gather (470 KB) and the
  // kernels' outputs (1.5 to 1.9 MB of floats) are split into ranges of items on the run's arena
  // when the budget has room.
  torch::manual_seed(9);
  const auto images = torch::randint(0, 256, {400, 2, 28, 28}).to(torch::kByte);
  bp::Dataset<StridedImages> dataset(400, {{"images", images}});
  const auto one_pass = dataset.pipeline().normalize(0.2f, 0.3f, 1 / 255.f).flip(0.5).crop(26, 24, 2);
  const auto moved = dataset.pipeline().flip(0.5).crop(26, 24, 2);
  const auto tensor_ops = dataset.pipeline()
                              .strided()
                              .normalize(0.2f, 0.3f, 1 / 255.f)
                              .strided()
                              .flip(0.5)
                              .strided()
                              .crop(26, 24, 2);
  const auto flipped = dataset.pipeline().normalize(0.2f, 0.3f, 1 / 255.f).flip(0.5);
  const auto normalized = dataset.pipeline().normalize(0.2f, 0.3f, 1 / 255.f);  // the flat loop
  const auto normalized_by_tensor_ops = dataset.pipeline().strided().normalize(0.2f, 0.3f, 1 / 255.f);
  auto images_of = [](const bp::Pipeline<StridedImages>& pipeline, std::size_t threads,
                      std::size_t prefetch) {
    std::vector<torch::Tensor> out;
    const bp::RunOptions options{
        .batch_size = 300, .shuffle = 4, .seed = 6, .prefetch = prefetch, .threads = threads};
    for (auto& batch : pipeline.gen_batch(options)) out.push_back(batch.get("images"));
    return torch::cat(out);
  };
  for (const auto& [threads, prefetch] : {std::pair<std::size_t, std::size_t>{2, 0}, {4, 0}, {2, 2}}) {
    CAPTURE(threads, prefetch);
    CHECK(torch::equal(images_of(one_pass, threads, prefetch), images_of(one_pass, 1, 0)));
    CHECK(torch::equal(images_of(moved, threads, prefetch), images_of(moved, 1, 0)));
    CHECK(torch::equal(images_of(flipped, threads, prefetch), images_of(flipped, 1, 0)));
    CHECK(torch::equal(images_of(normalized, threads, prefetch), images_of(normalized, 1, 0)));
    CHECK(torch::allclose(images_of(normalized, threads, prefetch),
                          images_of(normalized_by_tensor_ops, threads, prefetch), 0, 1e-6));
    CHECK(torch::allclose(images_of(one_pass, threads, prefetch), images_of(tensor_ops, threads, prefetch), 0,
                          1e-6));
  }
  // The shuffled gather gives the dataset's rows of the batch's items, as index_select does.
  auto gathered = dataset.pipeline().next_batch({.batch_size = 300, .shuffle = 4, .threads = 2});
  std::vector<int64_t> rows;
  for (std::size_t i = 0; i < gathered->size(); ++i)
    rows.push_back(static_cast<int64_t>(gathered->index().source(i)));
  CHECK(torch::equal(gathered->get("images"), images.index_select(0, torch::tensor(rows))));
}

TEST_CASE("item ranges cover every item once, split only where the arena and the work allow",
          "[images][parallel]") {
  using bp::detail::for_item_ranges;
  auto ranges_of = [](int arena_threads, int64_t items, std::size_t bytes) {
    std::mutex mutex;
    std::vector<std::pair<int64_t, int64_t>> ranges;
    tbb::task_arena(arena_threads).execute([&] {
      for_item_ranges(items, bytes, [&](int64_t first, int64_t last) {
        const std::scoped_lock lock(mutex);
        ranges.emplace_back(first, last);
      });
    });
    std::sort(ranges.begin(), ranges.end());
    return ranges;
  };
  auto covers = [](const std::vector<std::pair<int64_t, int64_t>>& ranges, int64_t items) {
    int64_t next = 0;
    for (const auto& [first, last] : ranges) {
      if (first != next || last <= first) return false;
      next = last;
    }
    return next == items;
  };
  const std::size_t large = 64 * bp::detail::kMinBytesPerItemRange;
  // Arenas of 2 threads at most: a larger one than the machine's cores makes oneTBB warn.
  const auto split = ranges_of(2, 1000, large);
  CHECK(covers(split, 1000));
  CHECK(split.size() >= 2);
  CHECK(ranges_of(1, 1000, large).size() == 1);                                       // no room in the arena
  CHECK(ranges_of(2, 1000, bp::detail::kMinBytesPerItemRange).size() == 1);           // too little work
  CHECK(ranges_of(2, 1, large) == std::vector<std::pair<int64_t, int64_t>>{{0, 1}});  // one item
  CHECK(covers(ranges_of(2, 7, large), 7));
  // On a worker while the consumer's steps hold the cores (the flag its run points it at), a
  // kernel runs on the worker alone.
  std::atomic<bool> steps_running{true};
  {
    const bp::detail::HoldItemRangesWhile hold(&steps_running);
    CHECK(ranges_of(2, 1000, large).size() == 1);
    steps_running = false;
    CHECK(covers(ranges_of(2, 1000, large), 1000));
    CHECK(ranges_of(2, 1000, large).size() >= 2);
  }
  CHECK(bp::detail::item_ranges_held == nullptr);

  // The dataset's gather: what index_select gives, for any dtype and shape, from a storage
  // offset too; non-contiguous data, conjugate views, tensors that need a gradient and rows that
  // do not exist go to index_select (its error).
  using bp::detail::gather_rows;
  const std::vector<int64_t> rows = {3, 0, 3, 9, 5};
  const auto positions = torch::tensor(rows);
  const auto values = [](const torch::Tensor& x) {  // comparable by torch::equal, whatever the dtype
    return x.is_complex() ? torch::view_as_real(x.resolve_conj()) : x;
  };
  for (const auto& data :
       {torch::randn({10, 3, 4}), torch::randint(0, 256, {10, 7}).to(torch::kByte),
        torch::randn({10}, torch::kDouble), torch::randn({10, 2}) > 0, torch::randn({10, 0}),
        torch::randn({4, 10}).t(), torch::randn({12, 3}).narrow(0, 2, 10),
        torch::randn({10, 2}, torch::kComplexFloat), torch::randn({10, 2}, torch::kComplexFloat).conj()}) {
    CAPTURE(data.sizes(), data.scalar_type(), data.is_conj());
    const auto gathered = gather_rows(data, rows);
    CHECK(gathered.sizes() == data.index_select(0, positions).sizes());
    CHECK(torch::equal(values(gathered), values(data.index_select(0, positions))));
  }
  // Many rows, short and longer than what is fetched ahead of each copy, over split ranges.
  for (const int64_t row_bytes : {800, 3000}) {
    CAPTURE(row_bytes);
    const auto source = torch::randint(0, 256, {1000, row_bytes}).to(torch::kByte);
    std::vector<int64_t> many(300);
    for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int64_t>((i * 7919) % 1000);
    CHECK(torch::equal(gather_rows(source, many), source.index_select(0, torch::tensor(many))));
  }
  const auto weights = torch::randn({10, 3}, torch::requires_grad());
  CHECK(gather_rows(weights, rows).requires_grad());
  CHECK(gather_rows(torch::randn({10, 3}), {}).sizes() == std::vector<int64_t>{0, 3});
  const std::vector<int64_t> missing = {1, 10};
  CHECK_THROWS(gather_rows(torch::randn({10, 3}), missing));
}

TEST_CASE("normalize's pixel map gives the same floats four at a time and one by one", "[images]") {
  const float mean = 0.2860f, std = 0.3530f, scale = 1 / 255.f;
  const auto map = bp::detail::pixel_map(mean, std, scale);
  for (int v = 0; v < 256; ++v) {  // the product rounded before the sum; near the tensor operations'
    CAPTURE(v);
    const auto product = static_cast<float>(static_cast<double>(v) * static_cast<double>(map.slope));
    CHECK(map.table[static_cast<std::size_t>(v)] == product + map.offset);
    CHECK(std::abs(map.table[static_cast<std::size_t>(v)] - (static_cast<float>(v) * scale - mean) / std) <=
          1e-6f);
  }
  // Every pixel value, in rows of every length modulo 4 (vectors and what is left after them),
  // read forwards and backwards (flipped rows): each float is the table's.
  std::vector<std::uint8_t> pixels(259);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i * 7);
  for (const int64_t count : {0, 1, 3, 4, 5, 6, 7, 8, 259}) {
    CAPTURE(count);
    std::vector<float> forwards(static_cast<std::size_t>(count)), backwards(forwards.size());
    bp::detail::map_pixels(forwards.data(), pixels.data(), count, 1, map);
    if (count > 0) bp::detail::map_pixels(backwards.data(), pixels.data() + count - 1, count, -1, map);
    for (std::size_t c = 0; c < forwards.size(); ++c) {
      CHECK(forwards[c] == map.table[pixels[c]]);
      CHECK(backwards[c] == map.table[pixels[forwards.size() - 1 - c]]);
    }
  }
}

TEST_CASE("normalize's floats are made by the crop after it, and are the same when read first", "[images]") {
  torch::manual_seed(5);
  const auto images = torch::randint(0, 256, {48, 2, 9, 7}).to(torch::kByte);
  bp::Dataset<ReadImages> dataset(48, {{"images", images}});
  const bp::RunOptions options{.batch_size = 16, .seed = 3};
  auto batches = [&](const bp::Pipeline<ReadImages>& pipeline) {
    std::vector<torch::Tensor> out;
    for (auto& batch : pipeline.gen_batch(options)) out.push_back(batch.get("images"));
    return torch::cat(out);
  };
  const auto normalized = dataset.pipeline().normalize(0.3f, 0.2f, 1 / 255.f);
  for (const int64_t padding : {0, 3}) {
    CAPTURE(padding);
    // One pass (normalize deferred, flipped twice, cut) against the floats made at each read.
    const auto fused = batches(normalized.flip(0.5).flip(0.3).crop(8, 5, padding));
    ReadImages::float_reads = ReadImages::other_reads = 0;
    const auto read_between =
        batches(normalized.read().flip(0.5).read().flip(0.3).read().crop(8, 5, padding));
    CHECK(ReadImages::float_reads == 3 * 3);  // every read in an action sees the floats
    CHECK(ReadImages::other_reads == 0);
    REQUIRE(fused.sizes() == std::vector<int64_t>{48, 2, 8, 5});
    CHECK(fused.scalar_type() == torch::kFloat);
    CHECK(torch::equal(fused, read_between));  // bit for bit
  }
  // Deferred to the end of the pipeline: the batch delivered holds the floats.
  const auto last = batches(normalized.flip(0.5));
  CHECK(torch::equal(last, batches(normalized.flip(0.5).read())));
  CHECK(torch::allclose(batches(normalized), images.to(torch::kFloat).mul(1 / 255.f).sub(0.3f).div(0.2f), 0,
                        1e-6));
  // An action called on a batch directly: every read gets the floats, by any accessor.
  ReadImages batch;
  batch["images"] = images.narrow(0, 0, 4).contiguous();
  batch.normalize(0.3f, 0.2f, 1 / 255.f);
  CHECK(batch.try_get<torch::Tensor>("images")->scalar_type() == torch::kFloat);
  batch.normalize(0.0f, 1.0f);
  CHECK(std::as_const(batch).get("images").scalar_type() == torch::kFloat);
  // Items of one row, [items, width] (flattened images): normalized and flipped as the tensor
  // operations do.
  const auto rows = torch::randint(0, 256, {16, 11}).to(torch::kByte);
  bp::Dataset<StridedImages> flat(16, {{"images", rows}});
  const bp::RunOptions all{.batch_size = 16, .seed = 2};
  for (const bool strided : {false, true}) {
    auto pipeline = strided ? flat.pipeline().strided() : flat.pipeline();
    auto flipped = pipeline.flip(0.5).next_batch(all)->get("images");
    auto normalized_flipped =
        pipeline.normalize(0.3f, 0.2f, 1 / 255.f).flip(0.5).next_batch(all)->get("images");
    CHECK(torch::equal(flipped, flat.pipeline().strided().flip(0.5).next_batch(all)->get("images")));
    CHECK(torch::allclose(normalized_flipped, flipped.to(torch::kFloat).mul(1 / 255.f).sub(0.3f).div(0.2f), 0,
                          1e-6));
  }

  // The items' draws pick the rows: images with a row more than the batch's items are refused.
  const auto five_rows = dataset.pipeline().set_rows(5);
  const bp::RunOptions four{.batch_size = 4};
  const std::string flip_error = "flip: the images [5, 1, 4, 4] have not one row per item (4 items)";
  CHECK_THROWS_WITH(five_rows.flip(1.0).run(four), test::contains(flip_error));
  CHECK_THROWS_WITH(five_rows.normalize(0.0f, 1.0f).flip(1.0).run(four), test::contains(flip_error));
  CHECK_THROWS_WITH(five_rows.crop(4, 4).run(four),
                    test::contains("crop: the images [5, 1, 4, 4] have not one row per item (4 items)"));
}

TEST_CASE("the kernels' outputs reuse freed memory, within a bound", "[images]") {
  using Pool = bp::detail::BufferPool;
  const auto options = torch::TensorOptions().dtype(torch::kFloat);
  auto first = Pool::empty({256, 28, 28}, options);
  first.fill_(1.0f);
  const void* memory = first.data_ptr();
  first = torch::Tensor();  // freed: back to the pool, not to the system
  const auto second = Pool::empty({256, 28, 28}, options);
  CHECK(second.data_ptr() == memory);
  CHECK(second.sizes() == std::vector<int64_t>{256, 28, 28});
  CHECK(second.dtype() == torch::kFloat);

  // Far more than the bound freed at once: the pool keeps no more than the bound, and a new size
  // displaces sizes no longer asked for.
  std::vector<torch::Tensor> many;
  for (int i = 0; i < 24; ++i) many.push_back(Pool::empty({1024, 1024, 2}, options));  // 8 MiB each
  many.clear();
  CHECK(Pool::shared()->cached_bytes() <= Pool::kMaxCachedBytes);
  CHECK(Pool::shared()->cached_bytes() >= Pool::kMaxCachedBytes / 2);
  auto other = Pool::empty({1000, 1000}, torch::kByte);
  const void* other_memory = other.data_ptr();
  other = torch::Tensor();
  CHECK(Pool::empty({1000, 1000}, torch::kByte).data_ptr() == other_memory);
  CHECK(Pool::shared()->cached_bytes() <= Pool::kMaxCachedBytes);

  // normalize, flip and crop take their outputs from it: a batch freed gives its memory to the next.
  bp::Dataset<Trainable> dataset(8, {{"images", torch::zeros({8, 1, 28, 28}, torch::kByte)}});
  auto prepared = dataset.pipeline().normalize(0.5f, 0.5f).flip().crop(24, 24);
  auto again = prepared;  // a copy starts an iteration of its own
  auto batch = prepared.next_batch({.batch_size = 8});
  const void* images = batch->get("images").data_ptr();
  batch.reset();
  CHECK(again.next_batch({.batch_size = 8})->get("images").data_ptr() == images);
}

TEST_CASE("normalize, cast and to_device change the images as asked", "[images]") {
  auto batch = bp::Dataset<bp::ImagesBatch>(4, {{"images", torch::full({4, 2, 2}, 255, torch::kByte)}})
                   .pipeline()
                   .normalize(0.5f, 0.25f, 1 / 255.f)
                   .to_device(torch::kCPU)
                   .next_batch({.batch_size = 4});
  CHECK(batch->get("images").scalar_type() == torch::kFloat);
  CHECK(batch->get("images").allclose(torch::full({4, 2, 2}, 2.0f)));
  auto cast = ramps(2).pipeline().cast(torch::kByte).next_batch({.batch_size = 2});
  CHECK(cast->get("images").scalar_type() == torch::kByte);
}

TEST_CASE("for_each_item gives each item its own stream, whatever the threads", "[images][parallel]") {
  auto draws = [](std::size_t threads) {
    std::vector<double> values;
    for (auto& batch :
         ramps(64).gen_batch({.batch_size = 16, .seed = 2, .prefetch = 2, .threads = threads})) {
      std::vector<double> per_item(batch.size());
      bp::for_each_item(batch, [&](std::size_t i, bp::Random& rng) { per_item[i] = rng.uniform(); });
      values.insert(values.end(), per_item.begin(), per_item.end());
    }
    return values;
  };
  const auto one = draws(1);
  CHECK(one == draws(4));
  CHECK(std::set<double>(one.begin(), one.end()).size() == one.size());
}

TEST_CASE("variables are updated safely under prefetch and read during and after a run", "[variables]") {
  auto dataset = bp::Dataset<Trainable>(1000);
  auto pipeline = dataset.pipeline().init_variable("items", int64_t{0}).count();
  int64_t seen_during = -1;
  for (auto& batch : pipeline.gen_batch({.batch_size = 10, .prefetch = 4, .threads = 4})) {
    if (batch.number() == 50) seen_during = pipeline.variables().value<int64_t>("items");
  }
  CHECK(seen_during >= 510);
  CHECK(pipeline.variables().value<int64_t>("items") == 1000);

  auto without = dataset.pipeline().count();  // the variable belongs to the pipeline that made it
  CHECK_THROWS_WITH(without.run({}), test::contains("no pipeline variable 'items' (variables: none)"));
  CHECK_THROWS_WITH(pipeline.variable<double>("items"),
                    test::contains("pipeline variable 'items' is a long, not a double"));
  auto other = pipeline.init_variable("extra", 1);
  CHECK(other.variables().names() == std::vector<std::string>{"extra", "items"});
  CHECK(pipeline.variables().names() == std::vector<std::string>{"items"});  // unchanged
}

TEST_CASE("a short run on Fashion-MNIST beats chance by far", "[training]") {
  Trainable::models().reset();
  auto train = fashion("train", 12000)
                   .pipeline()
                   .normalize(0.286f, 0.353f, 1 / 255.f)
                   .flip(0.5)
                   .init_variable("loss", std::vector<double>{})
                   .train();
  auto test = fashion("t10k", 2000)
                  .pipeline()
                  .normalize(0.286f, 0.353f, 1 / 255.f)
                  .init_variable("accuracy", bp::Accuracy{})
                  .evaluate();
  train.run({.batch_size = 64, .shuffle = 1, .prefetch = 2});
  test.run({.batch_size = 500, .prefetch = 2});
  const auto accuracy = test.variables().value<bp::Accuracy>("accuracy");
  CHECK(accuracy.total == 2000);
  CHECK(accuracy.value() > 0.7);  // chance is 0.1
  const auto losses = train.variables().value<std::vector<double>>("loss");
  CHECK(losses.size() == 12000 / 64 + 1);
  CHECK(losses.back() < losses.front() / 2);
}

namespace {
// The temporary files of saves of `file`: `<file>.partial-<random>`, each save its own.
std::vector<fs::path> partial_files(const fs::path& file) {
  std::vector<fs::path> found;
  const auto prefix = file.filename().string() + ".partial-";
  for (const auto& entry : fs::directory_iterator(file.parent_path()))
    if (entry.path().filename().string().starts_with(prefix)) found.push_back(entry.path());
  return found;
}
void remove_all(const std::vector<fs::path>& files) {
  for (const auto& file : files) fs::remove(file);
}
}  // namespace

TEST_CASE("checkpoints round-trip models and optimizer state, and replace files atomically", "[checkpoint]") {
  const auto file = fs::temp_directory_path() / ("batchpipe_ckpt_" + std::to_string(::getpid()) + ".pt");
  auto& models = Trainable::models();
  models.reset();
  Trainable::hidden = 16;
  auto dataset = fashion("t10k", 256);
  dataset.pipeline()
      .normalize(0.286f, 0.353f, 1 / 255.f)
      .init_variable("loss", std::vector<double>{})
      .train()
      .run({.batch_size = 64});
  const auto trained = models.get<Net>("net")->module->parameters()[0].clone();
  bp::save_checkpoint<Trainable>(file);
  CHECK(partial_files(file).empty());

  models.reset();
  CHECK_FALSE(torch::equal(models.get<Net>("net")->module->parameters()[0], trained));  // fresh weights
  bp::load_checkpoint<Trainable>(file);
  CHECK(torch::equal(models.get<Net>("net")->module->parameters()[0], trained));
  CHECK_FALSE(models.get<Net>("net")->optimizer.state().empty());  // Adam's moments came back

  SECTION("a model of another shape is refused, naming the parameter") {
    models.reset();
    Trainable::hidden = 32;
    CHECK_THROWS_WITH(bp::load_checkpoint<Trainable>(file),
                      test::contains("model 'net': parameter '1.weight' has shape [16, 784] in the "
                                     "checkpoint, [32, 784] in the model"));
    Trainable::hidden = 16;
  }
  SECTION("a corrupt or missing checkpoint is refused") {
    std::ofstream(file, std::ios::trunc) << "not a checkpoint";
    CHECK_THROWS_WITH(bp::load_checkpoint<Trainable>(file), test::contains("not a readable checkpoint"));
    CHECK_THROWS_WITH(bp::load_checkpoint<Trainable>(file.string() + ".missing"),
                      test::contains("no such checkpoint"));
  }
  fs::remove(file);
}

namespace {

using HeavyModel = bp::TorchModel<torch::nn::Linear, torch::optim::SGD>;

// A model of 16 MB, so that writing its checkpoint takes long enough to be killed midway.
struct Heavy : bp::Batch<Heavy> {
  MODEL(big)() {
    torch::nn::Linear net(2048, 2048);
    return HeavyModel{net, torch::optim::SGD(net->parameters(), torch::optim::SGDOptions(0.1))};
  }
};

const char* const checkpoint_variable = "BATCHPIPE_TEST_CHECKPOINT";

}  // namespace

// Run by the test below, in a child process: saves new checkpoints until it is killed.
TEST_CASE("checkpoint writer, run in a child process by the test below", "[.checkpoint_writer]") {
  const char* path = std::getenv(checkpoint_variable);
  REQUIRE(path);
  auto model = Heavy::models().get<HeavyModel>("big");
  for (;;) {
    {
      torch::NoGradGuard no_grad;
      model->module->weight.add_(1.0);
    }
    bp::save_checkpoint<Heavy>(path);
  }
}

TEST_CASE("a checkpoint save killed midway leaves the previous checkpoint loadable", "[checkpoint]") {
  const auto file = fs::temp_directory_path() / ("batchpipe_killed_" + std::to_string(::getpid()) + ".pt");
  Heavy::models().reset();
  (void)Heavy::models().get<HeavyModel>("big");
  bp::save_checkpoint<Heavy>(file);

  const std::string variable = std::string(checkpoint_variable) + "=" + file.string();
  std::vector<char*> environment;
  for (char** entry = environ; *entry; ++entry) environment.push_back(*entry);
  environment.push_back(const_cast<char*>(variable.c_str()));
  environment.push_back(nullptr);
  std::string self = "batchpipe_tests", spec = "[.checkpoint_writer]";
  char* arguments[] = {self.data(), spec.data(), nullptr};

  int killed_while_writing = 0;
  for (int round = 0; round < 3; ++round) {
    remove_all(partial_files(file));  // what an earlier child left
    pid_t child = 0;
    REQUIRE(::posix_spawn(&child, "/proc/self/exe", nullptr, nullptr, arguments, environment.data()) == 0);
    // Kill it as soon as it is writing (a partial file exists), or after 20 s at the latest.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (partial_files(file).empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(round * 5));
    killed_while_writing += !partial_files(file).empty();
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status));
    // Whatever the child managed, the checkpoint at `file` is whole: the previous one or a newer one.
    Heavy::models().reset();
    CHECK_NOTHROW(bp::load_checkpoint<Heavy>(file));
  }
  CHECK(killed_while_writing > 0);  // the test killed at least one save midway
  fs::remove(file);
  remove_all(partial_files(file));
}

// ---- images of any size: ImageList, resize, random_resized_crop, center_crop ----

namespace {

/// Pillow's own output for each filter and box (tests/data/pillow_resize.json, written by
/// scripts/pillow-resize-reference.py).
nlohmann::json pillow_reference() {
  std::ifstream in(fs::path(BATCHPIPE_TEST_DATA) / "pillow_resize.json");
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

/// Resamples the interleaved image `source` ({"shape": [h, w, c], "data": [...]}) as a case says.
template <class T>
std::vector<T> resample_case(const nlohmann::json& source, const nlohmann::json& c,
                             bp::detail::ResampleIsa isa) {
  const auto shape = source["shape"].get<std::vector<int64_t>>();
  const auto pixels = source["data"].get<std::vector<T>>();
  const bp::detail::InterleavedImage<T> image{pixels.data(), shape[0], shape[1], shape[2],
                                              shape[1] * shape[2]};
  auto box = bp::detail::SourceBox::whole(shape[0], shape[1]);
  if (!c["box"].is_null()) {
    const auto b = c["box"].get<std::vector<float>>();
    box = {b[0], b[1], b[2], b[3]};
  }
  bp::detail::ResampleFilter filter{};
  REQUIRE(bp::detail::parse_resample_filter(c["filter"].get<std::string>(), filter));
  const int64_t height = c["height"], width = c["width"];
  std::vector<T> planar(static_cast<std::size_t>(height * width * shape[2]));
  bp::detail::resample_image_on(isa, image, box, height, width, filter, planar.data());
  std::vector<T> interleaved(planar.size());  // as Pillow lays it out
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int64_t k = 0; k < shape[2]; ++k)
        interleaved[static_cast<std::size_t>((y * width + x) * shape[2] + k)] =
            planar[static_cast<std::size_t>((k * height + y) * width + x)];
  return interleaved;
}

/// A folder of PNGs of the given sizes (height, width), pixel values from the file's number.
bp::Index image_files(const test::Scratch& scratch, const std::vector<std::pair<int64_t, int64_t>>& sizes) {
  std::vector<bp::Id> ids;
  std::vector<fs::path> paths;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto [h, w] = sizes[i];
    const auto image =
        torch::arange(3 * h * w).remainder(251).add(static_cast<int64_t>(i)).to(torch::kByte).view({3, h, w});
    ids.push_back(std::to_string(i));
    paths.push_back(scratch / (std::to_string(i) + ".png"));
    bp::io::write_image(paths.back(), image);
  }
  return bp::Index::from_files(ids, paths);
}

}  // namespace

TEST_CASE("resize gives Pillow's pixels for every filter, shrinking, enlarging and from fractional boxes",
          "[images][resize]") {
  const auto reference = pillow_reference();
  for (const auto isa : bp::detail::resample_isas()) {  // every path this CPU can run
    for (const auto& c : reference["cases"]) {
      CAPTURE(static_cast<int>(isa), c["image"], c["filter"], c["width"], c["height"], c["box"].dump());
      if (c["image"] == "rgb") {
        CHECK(resample_case<std::uint8_t>(reference["rgb"], c, isa) ==
              c["expected"].get<std::vector<std::uint8_t>>());
      } else {
        const auto got = resample_case<float>(reference["float"], c, isa);
        const auto expected = c["expected"].get<std::vector<float>>();
        REQUIRE(got.size() == expected.size());
        for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == test::Approx(expected[i]).margin(1e-4));
      }
    }
  }
}

TEST_CASE("random resized crop boxes lie in the image, within the scale and ratio asked, else fall back",
          "[images][resize]") {
  bp::Random rng(3);
  std::vector<double> shares;
  for (int i = 0; i < 2000; ++i) {
    const int64_t height = 20 + static_cast<int64_t>(rng.below(400)),
                  width = 20 + static_cast<int64_t>(rng.below(400));
    const auto box = bp::detail::random_resized_box(height, width, 0.25, 0.75, 0.5, 2.0, rng);
    REQUIRE(box.top >= 0);
    REQUIRE(box.left >= 0);
    REQUIRE(box.top + box.height <= height);
    REQUIRE(box.left + box.width <= width);
    const double share = static_cast<double>(box.height * box.width) / static_cast<double>(height * width);
    const double ratio = static_cast<double>(box.width) / static_cast<double>(box.height);
    const bool fallback = box.height == height || box.width == width;
    if (!fallback) {  // rounding moves a side by half a pixel at most
      CHECK(share > 0.25 * 0.8);
      CHECK(share < 0.75 * 1.2);
      CHECK(ratio > 0.5 * 0.8);
      CHECK(ratio < 2.0 * 1.2);
      shares.push_back(share);
    }
  }
  // The share is drawn uniformly over the range, not stuck at an end of it.
  REQUIRE(shares.size() > 1000);
  const double mean = std::accumulate(shares.begin(), shares.end(), 0.0) / static_cast<double>(shares.size());
  CHECK(mean > 0.40);  // below 0.5: large boxes of extreme ratios miss the image more often, and retry
  CHECK(mean < 0.55);
  CHECK(*std::min_element(shares.begin(), shares.end()) < 0.27);
  CHECK(*std::max_element(shares.begin(), shares.end()) > 0.73);
  // Ratios no side can take: the fallback, never a box without pixels, never an overflow.
  for (const auto& [low, high] : {std::pair{1e200, 1e300}, std::pair{1e-300, 1e-200}}) {
    const auto extreme = bp::detail::random_resized_box(30, 40, 0.1, 1.0, low, high, rng);
    CHECK(extreme.height >= 1);
    CHECK(extreme.width >= 1);
    CHECK(extreme.top + extreme.height <= 30);
    CHECK(extreme.left + extreme.width <= 40);
  }
  // A strip no box of that ratio fits in: the whole height, the widest width the ratio allows, centred.
  const auto strip = bp::detail::random_resized_box(10, 1000, 0.5, 1.0, 1.0, 2.0, rng);
  CHECK(strip.top == 0);
  CHECK(strip.height == 10);
  CHECK(strip.width == 20);
  CHECK(strip.left == 490);
}

TEST_CASE("center_crop cuts the middle as torchvision does, padding an image smaller than the crop",
          "[images][resize]") {
  CHECK(bp::detail::center_offset(10, 4) == 3);
  CHECK(bp::detail::center_offset(9, 4) == 2);   // 2.5 rounds to even, as Python's round
  CHECK(bp::detail::center_offset(11, 4) == 4);  // 3.5 too
  CHECK(bp::detail::center_offset(2, 5) == -1);  // padded 1 before and 2 after
  const auto images = torch::arange(2 * 3 * 2 * 3).to(torch::kByte).view({2, 3, 2, 3}).add(1);
  bp::Dataset<bp::ImagesBatch> data(2, {{"images", images}});
  const auto out = data.pipeline().center_crop(4, 5).next_batch({.batch_size = 2})->get("images");
  REQUIRE(out.sizes() == torch::IntArrayRef({2, 3, 4, 5}));
  CHECK(torch::equal(out.narrow(2, 1, 2).narrow(3, 1, 3), images));
  CHECK(out.sum().item<int64_t>() == images.to(torch::kLong).sum().item<int64_t>());  // zeros elsewhere
  // Images [items, height, width] stay without a channel dimension, as resize leaves them.
  bp::Dataset<bp::ImagesBatch> planes(2, {{"images", images.select(1, 0)}});
  CHECK(planes.pipeline().center_crop(1, 2).next_batch({.batch_size = 2})->get("images").sizes() ==
        torch::IntArrayRef({2, 1, 2}));
}

TEST_CASE("images of different sizes load into an ImageList, which the geometric actions take",
          "[images][resize]") {
  test::Scratch scratch;
  const bp::Dataset<bp::ImagesBatch> files(image_files(scratch, {{30, 40}, {64, 17}, {25, 25}, {48, 90}}));
  auto loaded = files.pipeline().load_images().next_batch({.batch_size = 4});
  const bp::ImageList list = loaded->get<bp::ImageList>("images");
  REQUIRE(list.size() == 4);
  CHECK(list.height(1) == 64);
  CHECK(list.width(1) == 17);
  CHECK(list.channels() == 3);
  CHECK(torch::equal(list[2], bp::io::read_image(scratch / "2.png")));
  CHECK_THROWS_WITH(list.stack(), test::contains("item 0 is 3x30x40 and item 1 is 3x64x17"));
  // The files' own channels (0) must agree within a batch: the error names the files.
  bp::io::write_image(scratch / "grey.png", torch::zeros({1, 5, 5}, torch::kByte));
  const bp::Dataset<bp::ImagesBatch> mixed(bp::Index::from_files(
      std::vector<bp::Id>{"colour", "grey"}, std::vector<fs::path>{scratch / "0.png", scratch / "grey.png"}));
  CHECK_THROWS_WITH(mixed.pipeline().load_images(0).run({.batch_size = 2}),
                    test::contains("grey.png: has 1 channels and ") && test::contains("0.png has 3"));
  CHECK(mixed.pipeline()
            .load_images(3)
            .next_batch({.batch_size = 2})
            ->get<bp::ImageList>("images")
            .channels() == 3);
  CHECK_THROWS_WITH(files.pipeline().load_images().crop(8, 8).run({.batch_size = 4}),
                    test::contains("crop cuts images of one size") && test::contains("item 1 is 3x64x17"));

  // resize: each item as resizing it alone does; resize_shorter keeps proportions.
  auto resized = files.pipeline().load_images().resize(16, 12).next_batch({.batch_size = 4})->get("images");
  REQUIRE(resized.sizes() == torch::IntArrayRef({4, 3, 16, 12}));
  for (std::size_t i = 0; i < 4; ++i) {
    const auto alone = bp::detail::resize_items({list[i]}, {bp::detail::CropBox::whole(list[i])}, 16, 12,
                                                bp::detail::ResampleFilter::bilinear);
    CHECK(torch::equal(resized[static_cast<int64_t>(i)], alone[0]));
  }
  auto shorter = files.pipeline().load_images().resize_shorter(20).next_batch({.batch_size = 4});
  const bp::ImageList sized = shorter->get<bp::ImageList>("images");
  CHECK(sized.size_of(0) == "3x20x26");  // 40 * 20 / 30 = 26.67, truncated
  CHECK(sized.size_of(1) == "3x75x20");
  CHECK(sized.size_of(3) == "3x20x37");

  // random_resized_crop: one size out, the same for a seed at any prefetch and thread count.
  const auto crops = [&](std::size_t prefetch, std::size_t threads) {
    std::vector<torch::Tensor> out;
    for (auto& batch : files.pipeline().load_images().random_resized_crop(12, 10).flip().gen_batch(
             {.batch_size = 2, .seed = 9, .prefetch = prefetch, .threads = threads}))
      out.push_back(batch.get("images"));
    return torch::cat(out);
  };
  const auto reference = crops(0, 1);
  REQUIRE(reference.sizes() == torch::IntArrayRef({4, 3, 12, 10}));
  CHECK(torch::equal(reference, crops(2, 2)));
  CHECK(!torch::equal(reference, crops(0, 1).zero_()));
  // scale 1 and the image's own ratio: the whole image, as resize gives it.
  const auto square = files.pipeline()
                          .load_images()
                          .random_resized_crop(9, 9, 1.0, 1.0, 1.0, 1.0)
                          .next_batch({.batch_size = 4});
  const auto whole = files.pipeline().load_images().resize(9, 9).next_batch({.batch_size = 4});
  CHECK(torch::equal(square->get("images")[2], whole->get("images")[2]));
}

TEST_CASE("the geometric actions check their arguments and name the action", "[images][resize]") {
  bp::Dataset<bp::ImagesBatch> data(2, {{"images", torch::zeros({2, 3, 8, 8}, torch::kByte)}});
  CHECK_THROWS_WITH(data.pipeline().resize(0, 4).run({}),
                    test::contains("resize: the size 0x4 is not positive"));
  CHECK_THROWS_WITH(data.pipeline().resize(4, 4, "lanczos").run({}),
                    test::contains("resize: unknown filter 'lanczos'"));
  CHECK_THROWS_WITH(data.pipeline().random_resized_crop(4, 4, 0.5, 0.2).run({}),
                    test::contains("random_resized_crop: needs 0 < scale_min <= scale_max <= 1"));
  CHECK_THROWS_WITH(data.pipeline().center_crop(-1, 4).run({}), test::contains("center_crop: the size -1x4"));
  CHECK_THROWS_WITH(data.pipeline().load_images(2).run({}), test::contains("load_images: channels 2"));
  CHECK_THROWS_WITH(
      data.pipeline().normalize_channels(std::vector<float>{0.5f}, std::vector<float>{0.2f}).run({}),
      test::contains("normalize_channels: 1 means and 1 stds for images [2, 3, 8, 8]"));
  bp::Dataset<bp::ImagesBatch> empty(2, {{"images", torch::zeros({2, 3, 0, 8}, torch::kByte)}});
  CHECK_THROWS_WITH(empty.pipeline().resize(4, 4).run({}),
                    test::contains("resize: item 0 is an empty image (3x0x8)"));
  CHECK_THROWS_WITH(empty.pipeline().random_resized_crop(4, 4).run({}),
                    test::contains("random_resized_crop: item 0 is an empty image"));
  bp::Dataset<bp::ImagesBatch> ints(2, {{"images", torch::zeros({2, 3, 8, 8}, torch::kInt)}});
  CHECK_THROWS_WITH(ints.pipeline().resize(4, 4).run({}), test::contains("cannot resize images of Int"));
}

TEST_CASE("normalize_channels takes one mean and one std per channel", "[images][resize]") {
  const auto images = torch::randint(0, 256, {3, 3, 5, 4}).to(torch::kByte);
  bp::Dataset<bp::ImagesBatch> data(3, {{"images", images}});
  const std::vector<float> mean{0.485f, 0.456f, 0.406f}, std{0.229f, 0.224f, 0.225f};
  const auto out =
      data.pipeline().normalize_channels(mean, std, 1 / 255.f).next_batch({.batch_size = 3})->get("images");
  for (int64_t c = 0; c < 3; ++c) {
    const auto expected = images.select(1, c)
                              .to(torch::kFloat)
                              .mul(1 / 255.f)
                              .sub(mean[static_cast<std::size_t>(c)])
                              .div(std[static_cast<std::size_t>(c)]);
    CHECK(torch::allclose(out.select(1, c), expected, 1e-6, 1e-6));
  }
  // Strided images take the tensor operations instead of the one-pass kernel: the same floats.
  bp::Dataset<bp::ImagesBatch> strided(3, {{"images", images.transpose(2, 3).contiguous().transpose(2, 3)}});
  const auto by_tensors = strided.pipeline()
                              .normalize_channels(mean, std, 1 / 255.f)
                              .next_batch({.batch_size = 3})
                              ->get("images");
  CHECK(torch::allclose(by_tensors, out, 1e-6, 1e-6));
}

TEST_CASE("resize from a config, by name, with its filter", "[images][resize][config]") {
  bp::Dataset<bp::ImagesBatch> data(2, {{"images", torch::randint(0, 256, {2, 3, 20, 30}).to(torch::kByte)}});
  const auto config = bp::Config::parse(
      R"({"pipeline": [{"resize": {"height": 10, "width": 15, "filter": "box"}},
                       {"normalize_channels": {"mean": [0, 0, 0], "std": [1, 2, 4]}}]})",
      "resize.json");
  auto batch = bp::Pipeline<bp::ImagesBatch>::from_config(data, config).next_batch({.batch_size = 2});
  const auto expected = torch::nn::functional::avg_pool2d(
      data.pipeline().next_batch({.batch_size = 2})->get("images").to(torch::kFloat),
      torch::nn::functional::AvgPool2dFuncOptions(2));
  CHECK(torch::allclose(batch->get("images").select(1, 0), expected.select(1, 0), 0, 1 + 1e-4));
  CHECK(torch::allclose(batch->get("images").select(1, 2) * 4, expected.select(1, 2), 0, 1 + 1e-4));
}
