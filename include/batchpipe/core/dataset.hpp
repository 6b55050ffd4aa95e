#pragma once
/// @file dataset.hpp
/// @brief `Dataset<B>`: an index, a batch class, and optionally preloaded data whose rows follow
/// the index. This is where batches are created.

#include <batchpipe/core/batch.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/index.hpp>
#include <batchpipe/core/run_options.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/item_ranges.hpp>
#include <batchpipe/detail/kept_iteration.hpp>
#include <batchpipe/detail/traits.hpp>
#include <batchpipe/detail/type_name.hpp>
#include <batchpipe/fwd.hpp>

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace batchpipe {

template <class B>
struct DatasetSplit;

/// @brief A dataset: which items there are (an Index), what a batch of them is (the batch
/// class B), and optionally their data, preloaded as tensors whose first dimension has one row
/// per item.
///
/// Copies are cheap and share the data. Subsets and splits share it too: their indexes keep each
/// item's row.
///
/// @code
/// bp::Dataset<MyBatch> dataset(bp::Index(60000), {{"images", images}, {"labels", labels}});
/// auto [train, test, validation] = dataset.split(0.8, /*shuffle seed*/ 7);
/// for (auto& batch : train.gen_batch({.batch_size = 256, .shuffle = 1})) { ... }
/// auto pipeline = train.pipeline().normalize(0.5f, 0.25f);      // lazy
/// @endcode
template <class B>
class Dataset {
 public:
  /// The batch class the dataset makes.
  using batch_type = B;
  /// Preloaded data: a tensor per component name, one row per item of the source index.
  using Data = std::map<std::string, at::Tensor, std::less<>>;

  /// A dataset over `index`; each tensor of `data` must have index.source_size() rows.
  explicit Dataset(Index index, Data data = {})
      : index_(std::move(index)), data_(std::make_shared<const Data>(std::move(data))) {
    for (const auto& [name, tensor] : *data_) check_component(name, tensor);
  }

  /// A dataset of n items with ids 0 .. n-1.
  explicit Dataset(std::size_t n, Data data = {}) : Dataset(Index(n), std::move(data)) {}

  /// The dataset's items.
  const Index& index() const noexcept { return index_; }
  /// Number of items.
  std::size_t size() const noexcept { return index_.size(); }
  /// The preloaded data, all rows (not only this dataset's).
  const Data& data() const noexcept { return *data_; }

  /// The items at `positions` of this dataset, with the same data.
  [[nodiscard]] Dataset subset(std::span<const std::size_t> positions) const {
    return Dataset(index_.subset(positions), data_);
  }

  /// Train / test / validation datasets by shares, optionally shuffled.
  [[nodiscard]] DatasetSplit<B> split(Shares shares,
                                      std::optional<std::uint64_t> shuffle = std::nullopt) const;
  /// Train (`train_share`) and test (the rest) datasets, optionally shuffled.
  [[nodiscard]] DatasetSplit<B> split(double train_share,
                                      std::optional<std::uint64_t> shuffle = std::nullopt) const;

  /// Makes the batch of the items at `positions` (of this dataset's index): its index, and the
  /// preloaded data's rows for those items (copied, so actions may change them in place).
  B create_batch(std::span<const std::size_t> positions) const {
    static_assert(std::is_default_constructible_v<B>, "a batch class must be default-constructible");
    B batch{};
    detail::access::index(batch) = index_.subset_unchecked(positions);
    if (!data_->empty()) {
      const Index& items = batch.index();
      std::vector<int64_t> rows(items.size());
      for (std::size_t i = 0; i < items.size(); ++i) rows[i] = static_cast<int64_t>(items.source(i));
      for (const auto& [name, tensor] : *data_) batch.set(name, detail::gather_rows(tensor, rows));
    }
    return batch;
  }

  // The members below make a Pipeline<B>, which is defined in pipeline.hpp: that header includes
  // this one, not the other way round. Their bodies are compiled only when used, by which time
  // the umbrella header (or pipeline.hpp) has defined Pipeline.

  /// A new, empty pipeline over this dataset (lazy: building it runs nothing).
  [[nodiscard]] Pipeline<B> pipeline() const { return Pipeline<B>(*this); }

  /// The dataset's batches, made on demand: `for (auto& batch : dataset.gen_batch(options))`.
  [[nodiscard]] BatchStream<B> gen_batch(const RunOptions& options) const {
    return pipeline().gen_batch(options);
  }

  /// The next batch of an iteration that the first call starts with `options` (later calls
  /// continue it); nothing once it is over. reset_iter() starts again.
  std::optional<B> next_batch(const RunOptions& options) {
    return iteration_.value.next([&] { return gen_batch(options); });
  }
  /// Forgets the iteration next_batch() started: the next call starts a new one.
  void reset_iter() { iteration_.value.reset(); }

 private:
  Dataset(Index index, std::shared_ptr<const Data> data) : index_(std::move(index)), data_(std::move(data)) {}

  void check_component(const std::string& name, const at::Tensor& tensor) const {
    if (!tensor.defined() || tensor.dim() == 0) {
      throw Error("Dataset<" + detail::type_name<B>() + ">: component '" + name +
                  "' must be a tensor with one row per item, got " +
                  (tensor.defined() ? "a scalar" : "an undefined tensor"));
    }
    if (static_cast<std::size_t>(tensor.size(0)) != index_.source_size()) {
      throw Error("Dataset<" + detail::type_name<B>() + ">: component '" + name + "' has " +
                  std::to_string(tensor.size(0)) + " rows, the index " +
                  std::to_string(index_.source_size()) + " items");
    }
  }

  Index index_;
  std::shared_ptr<const Data> data_;
  detail::not_copied<detail::KeptIteration<B>> iteration_;
};

/// @brief The parts of a split dataset.
template <class B>
struct DatasetSplit {
  Dataset<B> train;       ///< the training items
  Dataset<B> test;        ///< the test items
  Dataset<B> validation;  ///< the validation items (empty when split by one share)
};

template <class B>
DatasetSplit<B> Dataset<B>::split(Shares shares, std::optional<std::uint64_t> shuffle) const {
  auto parts = index_.split(shares, shuffle);
  return {Dataset(std::move(parts.train), data_), Dataset(std::move(parts.test), data_),
          Dataset(std::move(parts.validation), data_)};
}

template <class B>
DatasetSplit<B> Dataset<B>::split(double train_share, std::optional<std::uint64_t> shuffle) const {
  return split(Shares{.train = train_share, .test = 1.0 - train_share, .validation = 0.0}, shuffle);
}

}  // namespace batchpipe
