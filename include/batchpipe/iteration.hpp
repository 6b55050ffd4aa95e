#pragma once
/// @file iteration.hpp
/// @brief RunOptions: how a dataset is cut into batches and how a pipeline runs them.

#include "error.hpp"
#include "random.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace batchpipe {

/// @brief `.n_epochs = bp::endless` iterates until the caller stops.
inline constexpr std::nullopt_t endless = std::nullopt;

/// @brief Options of one pass over a dataset, written with designated initializers.
///
/// @code
/// pipeline.run({.batch_size = 256, .n_epochs = 5, .shuffle = 42, .prefetch = 2});
/// @endcode
struct RunOptions {
  /// Items per batch (> 0).
  std::size_t batch_size = 32;
  /// Passes over the dataset; `bp::endless` for no end.
  std::optional<std::size_t> n_epochs = 1;
  /// Seed of the shuffle, a new order every epoch; unset keeps the index order.
  std::optional<std::uint64_t> shuffle = std::nullopt;
  /// Seed of the batches' random streams. Unset: the shuffle seed when there is one, otherwise
  /// a fresh seed each run.
  std::optional<std::uint64_t> seed = std::nullopt;
  /// Drop each epoch's last batch when it is smaller than batch_size.
  bool drop_last = false;
  /// Batches computed ahead of the consumer: at most prefetch + 1 in flight. 0 computes each
  /// batch in the calling thread when it is asked for.
  std::size_t prefetch = 0;
  /// Deliver batches in index order (the default) or as soon as each is ready.
  bool ordered = true;
  /// The thread budget shared by the batch workers and LibTorch's intra-op threads; 0 takes
  /// every core.
  std::size_t threads = 0;
  /// LibTorch intra-op threads during the run; 0 derives them from the budget
  /// (threads / workers, at least 1).
  std::size_t intra_op_threads = 0;
};

/// @brief What a finished run did.
struct RunStats {
  std::size_t batches = 0;
  std::size_t items = 0;
  double seconds = 0.0;
};

namespace detail {

/// One batch to make: its number across epochs, its epoch and its items' positions.
struct BatchPlan {
  std::size_t number = 0;
  std::size_t epoch = 0;
  std::vector<std::size_t> positions;
};

/// Cuts positions 0 .. n-1 into batches, epoch after epoch. Every position appears exactly once
/// per epoch; the last batch of an epoch is the remainder unless drop_last.
class BatchSampler {
 public:
  BatchSampler(std::size_t n_items, const RunOptions& options)
      : n_items_(n_items), options_(options) {
    if (options.batch_size == 0) throw Error("RunOptions: batch_size must be at least 1");
    if (options.n_epochs && *options.n_epochs == 0) return;
    start_epoch(0);
  }

  /// The next batch's plan, or nothing when the last epoch is done.
  std::optional<BatchPlan> next() {
    if (order_.empty()) return std::nullopt;
    if (cursor_ == order_.size() || (options_.drop_last && order_.size() - cursor_ < options_.batch_size)) {
      const std::size_t next_epoch = epoch_ + 1;
      if (options_.n_epochs && next_epoch >= *options_.n_epochs) return finish();
      // An epoch with no full batch yields nothing, ever: stop rather than loop forever.
      if (epoch_batches_ == 0) return finish();
      start_epoch(next_epoch);
    }
    const std::size_t take = std::min(options_.batch_size, order_.size() - cursor_);
    if (options_.drop_last && take < options_.batch_size) return finish();
    BatchPlan plan{number_++, epoch_, {order_.begin() + static_cast<std::ptrdiff_t>(cursor_),
                                       order_.begin() + static_cast<std::ptrdiff_t>(cursor_ + take)}};
    cursor_ += take;
    ++epoch_batches_;
    return plan;
  }

 private:
  std::optional<BatchPlan> finish() {
    order_.clear();
    return std::nullopt;
  }

  void start_epoch(std::size_t epoch) {
    epoch_ = epoch;
    cursor_ = 0;
    epoch_batches_ = 0;
    order_.resize(n_items_);
    for (std::size_t i = 0; i < n_items_; ++i) order_[i] = i;
    if (options_.shuffle) Random(derive_seed(*options_.shuffle, epoch)).shuffle(order_);
  }

  std::size_t n_items_;
  RunOptions options_;
  std::vector<std::size_t> order_;
  std::size_t cursor_ = 0;
  std::size_t epoch_ = 0;
  std::size_t epoch_batches_ = 0;
  std::size_t number_ = 0;
};

}  // namespace detail
}  // namespace batchpipe
