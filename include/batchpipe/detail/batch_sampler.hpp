#pragma once
// How a run cuts a dataset into batches: the plan of each batch, epoch after epoch.

#include <batchpipe/core/error.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/core/run_options.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
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
  // The options it needs are kept as plain values: copying a disengaged std::optional copies
  // its unset bytes, which GCC 12 reports as a use of uninitialized memory.
  BatchSampler(std::size_t n_items, const RunOptions& options)
      : n_items_(n_items),
        batch_size_(options.batch_size),
        endless_(!options.n_epochs.has_value()),
        n_epochs_(options.n_epochs.value_or(0)),
        shuffled_(options.shuffle.has_value()),
        shuffle_seed_(options.shuffle.value_or(0)),
        drop_last_(options.drop_last) {
    if (batch_size_ == 0) throw Error("RunOptions: batch_size must be at least 1");
    if (!endless_ && n_epochs_ == 0) return;
    start_epoch(0);
  }

  /// The next batch's plan, or nothing when the last epoch is done.
  std::optional<BatchPlan> next() {
    if (order_.empty()) return std::nullopt;
    if (cursor_ == order_.size() || (drop_last_ && order_.size() - cursor_ < batch_size_)) {
      const std::size_t next_epoch = epoch_ + 1;
      if (!endless_ && next_epoch >= n_epochs_) return finish();
      // An epoch with no full batch yields nothing, ever: stop rather than loop forever.
      if (epoch_batches_ == 0) return finish();
      start_epoch(next_epoch);
    }
    const std::size_t take = std::min(batch_size_, order_.size() - cursor_);
    if (drop_last_ && take < batch_size_) return finish();
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
    if (shuffled_) Random(derive_seed(shuffle_seed_, epoch)).shuffle(order_);
  }

  std::size_t n_items_;
  std::size_t batch_size_;
  bool endless_;
  std::size_t n_epochs_;
  bool shuffled_;
  std::uint64_t shuffle_seed_;
  bool drop_last_;
  std::vector<std::size_t> order_;
  std::size_t cursor_ = 0;
  std::size_t epoch_ = 0;
  std::size_t epoch_batches_ = 0;
  std::size_t number_ = 0;
};

}  // namespace batchpipe::detail
