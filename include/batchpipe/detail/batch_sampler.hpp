#pragma once
// How a run cuts a dataset into batches: the plan of each batch, epoch after epoch.

#include <batchpipe/core/error.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/core/run_options.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <vector>

namespace batchpipe::detail {

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
  BatchSampler(std::size_t n_items, const RunOptions& options) : n_items_(n_items), options_(options) {
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
    BatchPlan plan{number_++,
                   epoch_,
                   {order_.begin() + static_cast<std::ptrdiff_t>(cursor_),
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

}  // namespace batchpipe::detail
