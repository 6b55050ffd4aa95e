// Index, files index, dataset, and how a dataset is cut into batches.
#include "support.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

namespace fs = std::filesystem;

namespace {
struct PlainBatch : bp::Batch<PlainBatch> {};

std::set<bp::Id> id_set(const bp::Index& index) {
  auto ids = index.ids();
  return {ids.begin(), ids.end()};
}

struct TempFolder : test::Scratch {
  const fs::path& path = folder;
  void touch(const std::string& name) const {
    fs::create_directories((path / name).parent_path());
    std::ofstream(path / name) << name;
  }
};
}  // namespace

TEST_CASE("a range index holds ids 0..n-1 at their own rows", "[index]") {
  bp::Index index(5);
  REQUIRE(index.size() == 5);
  CHECK(index.id(3) == bp::Id{int64_t{3}});
  CHECK(index.source(3) == 3);
  CHECK(index.position(int64_t{4}) == 4);
  CHECK_FALSE(index.contains(int64_t{5}));
  CHECK_FALSE(index.contains(std::string("3")));
  CHECK_THROWS_WITH(index.id(5), test::contains("position 5 is out of range (size 5)"));
  CHECK_THROWS_WITH(index.position(int64_t{9}), test::contains("no item with id '9'"));
}

TEST_CASE("explicit ids are checked for duplicates", "[index]") {
  bp::Index names(std::vector<std::string>{"cat", "dog", "eel"});
  CHECK(names.position(std::string("dog")) == 1);
  CHECK(bp::to_string(names.id(2)) == "eel");
  CHECK_THROWS_WITH(bp::Index(std::vector<std::string>{"a", "b", "a"}),
                    test::contains("duplicate id 'a' at positions 0 and 2"));
  CHECK_THROWS_WITH(bp::Index(std::vector<int64_t>{7, 8, 8}),
                    test::contains("duplicate id '8' at positions 1 and 2"));
}

TEST_CASE("subsets keep each item's source row", "[index]") {
  bp::Index index(std::vector<int64_t>{10, 11, 12, 13, 14});
  auto subset = index.subset(std::vector<std::size_t>{4, 1});
  REQUIRE(subset.size() == 2);
  CHECK(subset.id(0) == bp::Id{int64_t{14}});
  CHECK(subset.source(0) == 4);
  CHECK(subset.position(int64_t{11}) == 1);
  CHECK_FALSE(subset.contains(int64_t{12}));
  auto nested = subset.subset(std::vector<std::size_t>{1});
  CHECK(nested.source(0) == 1);
  CHECK_THROWS_WITH(index.subset(std::vector<std::size_t>{1, 1}),
                    test::contains("position 1 is given twice"));
  CHECK_THROWS_WITH(index.subset(std::vector<std::size_t>{7}), test::contains("out of range"));
  auto by_ids = index.subset_of_ids(std::vector<bp::Id>{int64_t{13}, int64_t{10}});
  CHECK(by_ids.source(0) == 3);
  CHECK(by_ids.source(1) == 0);
}

TEST_CASE("split shares items out without loss or overlap", "[index]") {
  bp::Index index(1000);
  auto parts = index.split({.train = 0.7, .test = 0.2, .validation = 0.1}, 5);
  CHECK(parts.train.size() == 700);
  CHECK(parts.test.size() == 200);
  CHECK(parts.validation.size() == 100);
  std::set<bp::Id> all;
  for (const auto* part : {&parts.train, &parts.test, &parts.validation}) {
    for (const auto& id : part->ids()) CHECK(all.insert(id).second);
  }
  CHECK(all == id_set(index));

  SECTION("the same seed gives the same split, another seed another") {
    CHECK(index.split(0.5, 5).train == index.split(0.5, 5).train);
    CHECK_FALSE(index.split(0.5, 5).train == index.split(0.5, 6).train);
  }
  SECTION("without a seed the order is kept") {
    auto ordered = index.split(0.25);
    CHECK(ordered.train.id(0) == bp::Id{int64_t{0}});
    CHECK(ordered.test.id(0) == bp::Id{int64_t{250}});
    CHECK(ordered.validation.empty());
  }
  SECTION("shares must add up to 1") {
    CHECK_THROWS_WITH(index.split({.train = 0.5, .test = 0.2}), test::contains("add up to 1"));
    CHECK_THROWS_WITH(index.split(1.5), test::contains("add up to 1"));
  }
  SECTION("shares must be finite: a NaN passes every comparison") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(index.split(nan), test::contains("shares must be finite"));
    CHECK_THROWS_WITH(index.split({.train = 0.5, .test = 0.5, .validation = nan}), test::contains("finite"));
    CHECK_THROWS_WITH(index.split({.train = inf, .test = -inf}), test::contains("finite"));
  }
}

TEST_CASE("split gives every non-zero share at least one item", "[index]") {
  auto sizes = [](std::size_t n, bp::Shares shares) {
    auto parts = bp::Index(n).split(shares);
    return std::vector<std::size_t>{parts.train.size(), parts.test.size(), parts.validation.size()};
  };
  const bp::Shares three_ways{.train = 0.5, .test = 0.3, .validation = 0.2};
  CHECK(sizes(5, three_ways) == std::vector<std::size_t>{3, 1, 1});  // was 3/2/0
  CHECK(sizes(3, three_ways) == std::vector<std::size_t>{1, 1, 1});  // was 2/1/0
  CHECK(sizes(10, three_ways) == std::vector<std::size_t>{5, 3, 2});
  CHECK(sizes(7, three_ways) == std::vector<std::size_t>{4, 2, 1});  // largest remainders: 3.5, 2.1, 1.4
  // 3.6, 0.2, 0.2 round to 4/0/0; test and validation each take an item from the largest part.
  CHECK(sizes(4, {.train = 0.9, .test = 0.05, .validation = 0.05}) == std::vector<std::size_t>{2, 1, 1});
  CHECK(sizes(2, {.train = 1.0, .test = 0.0}) == std::vector<std::size_t>{2, 0, 0});
  CHECK(sizes(0, three_ways) == std::vector<std::size_t>{0, 0, 0});  // an empty index is allowed
  CHECK_THROWS_WITH(bp::Index(1).split(three_ways),
                    test::contains("3 non-zero shares need at least 3 items, the index has 1"));
  CHECK_THROWS_WITH(bp::Index(2).split(three_ways), test::contains("non-zero shares"));
  CHECK_THROWS_WITH(bp::Index(1).split(0.8), test::contains("2 non-zero shares need at least 2 items"));
  for (std::size_t n = 3; n < 40; ++n) {
    CAPTURE(n);
    const auto got = sizes(n, three_ways);
    CHECK(got[0] + got[1] + got[2] == n);
    CHECK(std::min({got[0], got[1], got[2]}) >= 1);
  }
}

TEST_CASE("a files index maps file names to paths", "[index][files]") {
  TempFolder folder;
  for (auto name : {"b.png", "a.png", "notes.txt", "sub/c.png"}) folder.touch(name);

  auto flat = bp::Index::from_folder(folder.path, {".png"});
  REQUIRE(flat.size() == 2);
  CHECK(bp::to_string(flat.id(0)) == "a.png");
  CHECK(flat.path(1) == folder.path / "b.png");

  auto deep = bp::Index::from_folder(folder.path, {".png"}, /*recursive*/ true, /*strip_extension*/ true);
  CHECK(id_set(deep) == std::set<bp::Id>{std::string("a"), std::string("b"), std::string("c")});

  auto globbed = bp::Index::from_glob((folder.path / "*" / "?.png").string());
  REQUIRE(globbed.size() == 1);
  CHECK(globbed.path(0) == folder.path / "sub" / "c.png");
  CHECK(bp::Index::from_glob((folder.path / "*.png").string()).size() == 2);
  CHECK(bp::Index::from_glob((folder.path / "*.jpg").string()).empty());

  auto subset = flat.subset(std::vector<std::size_t>{1});
  CHECK(subset.path(0) == folder.path / "b.png");
  CHECK_THROWS_WITH(bp::Index(3).path(0), test::contains("holds no files"));

  folder.touch("sub/a.png");
  CHECK_THROWS_WITH(bp::Index::from_folder(folder.path, {".png"}, true),
                    test::contains("two files have the id 'a.png'"));
  CHECK_THROWS_WITH(bp::Index::from_folder(folder.path / "missing"), test::contains("is not a folder"));
}

TEST_CASE("a symlink loop is not a file: both files indexes skip it", "[index][files]") {
  TempFolder folder;
  folder.touch("a.png");
  folder.touch("sub/b.png");
  fs::create_symlink("loop.png", folder.path / "loop.png");   // points at itself
  fs::create_symlink("sub/b.png", folder.path / "link.png");  // a symlink to a file is one
  fs::create_symlink("../sub", folder.path / "sub" / "up");   // a folder cycle, not entered
  fs::create_symlink("missing.png", folder.path / "dangling.png");
  const std::set<bp::Id> files{std::string("a.png"), std::string("link.png")};

  CHECK(id_set(bp::Index::from_folder(folder.path)) == files);
  CHECK(id_set(bp::Index::from_folder(folder.path, {".png"})) == files);
  CHECK(bp::Index::from_folder(folder.path, {}, /*recursive*/ true).size() == 3);  // and sub/b.png
  CHECK(id_set(bp::Index::from_glob((folder.path / "*.png").string())) == files);
  CHECK(bp::Index::from_glob((folder.path / "loop.png").string()).empty());
  CHECK(bp::Index::from_glob((folder.path / "*" / "*.png").string()).size() == 1);
  CHECK(bp::Index::from_glob((folder.path / "a.png" / "*.png").string()).empty());  // under a file
  CHECK_THROWS_WITH(bp::Index::from_folder(folder.path / "loop.png"), test::contains("is not a folder"));
}

TEST_CASE("a dataset's batches carry the rows of their items", "[dataset]") {
  auto values = torch::arange(20, torch::kFloat).reshape({10, 2});
  bp::Dataset<PlainBatch> dataset(10, {{"values", values}});
  auto parts = dataset.split(0.6, 3);
  REQUIRE(parts.train.size() == 6);
  CHECK(parts.train.data().at("values").size(0) == 10);  // shared, not copied

  auto batch = parts.test.create_batch(std::vector<std::size_t>{0, 2});
  REQUIRE(batch.size() == 2);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const auto row = static_cast<int64_t>(batch.index().source(i));
    CHECK(torch::equal(batch.item(i)["values"], values[row]));
  }
  SECTION("batch data are copies: changing them leaves the dataset alone") {
    batch["values"].mul_(0);
    CHECK(dataset.data().at("values").sum().item<float>() == test::Approx(190));
  }
  SECTION("data must follow the index") {
    CHECK_THROWS_WITH(bp::Dataset<PlainBatch>(9, {{"values", values}}),
                      test::contains("component 'values' has 10 rows, the index 9 items"));
    CHECK_THROWS_WITH(bp::Dataset<PlainBatch>(1, {{"scalar", torch::tensor(1.0)}}),
                      test::contains("one row per item"));
  }
}

TEST_CASE("every item comes exactly once per epoch", "[iteration]") {
  for (std::size_t n : {0, 1, 7, 64, 100}) {
    for (std::size_t batch_size : {1, 3, 10, 64, 128}) {
      for (bool drop_last : {false, true}) {
        for (std::size_t prefetch : {0, 1, 4}) {
          const std::size_t epochs = 3;
          CAPTURE(n, batch_size, drop_last, prefetch);
          bp::Dataset<PlainBatch> dataset(n);
          std::map<std::size_t, std::vector<int64_t>> seen;  // epoch -> ids
          std::size_t expected_number = 0;
          for (auto& batch : dataset.gen_batch({.batch_size = batch_size,
                             .n_epochs = epochs,
                             .shuffle = 11,
                             .drop_last = drop_last,
                             .prefetch = prefetch,
                             .threads = 2})) {
            CHECK(batch.number() == expected_number++);
            if (drop_last) CHECK(batch.size() == batch_size);
            for (const auto& id : batch.index().ids()) seen[batch.epoch()].push_back(id.integer());
          }
          const std::size_t per_epoch = drop_last ? n / batch_size * batch_size : n;
          const std::size_t batches_per_epoch =
              drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
          CHECK(expected_number == epochs * batches_per_epoch);
          for (std::size_t epoch = 0; per_epoch > 0 && epoch < epochs; ++epoch) {
            auto& ids = seen[epoch];
            REQUIRE(ids.size() == per_epoch);
            std::sort(ids.begin(), ids.end());
            CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
          }
        }
      }
    }
  }
}

TEST_CASE("without drop_last the last batch of an epoch is the remainder", "[iteration]") {
  bp::Dataset<PlainBatch> dataset(10);
  std::vector<std::size_t> sizes;
  for (auto& batch : dataset.gen_batch({.batch_size = 4, .n_epochs = 2})) sizes.push_back(batch.size());
  CHECK(sizes == std::vector<std::size_t>{4, 4, 2, 4, 4, 2});
}

TEST_CASE("shuffling follows the seed and changes every epoch", "[iteration]") {
  bp::Dataset<PlainBatch> dataset(50);
  auto order = [&](std::optional<uint64_t> seed) {
    std::vector<bp::Id> ids;
    for (auto& batch : dataset.gen_batch({.batch_size = 50, .n_epochs = 2, .shuffle = seed})) {
      for (const auto& id : batch.index().ids()) ids.push_back(id);
    }
    return ids;
  };
  const auto first = order(9);
  CHECK(first == order(9));
  CHECK(first != order(10));
  CHECK(!std::equal(first.begin(), first.begin() + 50, first.begin() + 50));  // epochs differ
  const auto unshuffled = order(std::nullopt);
  CHECK(unshuffled.front() == bp::Id{int64_t{0}});
  CHECK(unshuffled[49] == bp::Id{int64_t{49}});
}

TEST_CASE("next_batch continues one iteration; endless runs until stopped", "[iteration]") {
  bp::Dataset<PlainBatch> dataset(5);
  const bp::RunOptions options{.batch_size = 2};
  CHECK(dataset.next_batch(options)->size() == 2);
  CHECK(dataset.next_batch(options)->size() == 2);
  CHECK(dataset.next_batch(options)->size() == 1);
  CHECK_FALSE(dataset.next_batch(options).has_value());
  dataset.reset_iter();
  CHECK(dataset.next_batch(options)->index().id(0) == bp::Id{int64_t{0}});

  auto pipeline = dataset.pipeline();
  std::size_t count = 0;
  for (auto& batch : pipeline.gen_batch({.batch_size = 3, .n_epochs = bp::endless, .prefetch = 2})) {
    CHECK(batch.size() == (count % 2 == 0 ? 3u : 2u));
    if (++count == 25) break;
  }
  CHECK(count == 25);
  CHECK(pipeline.next_batch({.batch_size = 5})->size() == 5);

  bp::Dataset<PlainBatch> tiny(2);
  std::size_t none = 0;
  for (auto& batch : tiny.gen_batch({.batch_size = 3, .n_epochs = bp::endless, .drop_last = true})) {
    (void)batch;
    ++none;
  }
  CHECK(none == 0);  // no full batch exists: the endless loop ends at once
  CHECK_THROWS_WITH(tiny.gen_batch({.batch_size = 0}), test::contains("batch_size must be at least 1"));
}
