#pragma once
// How a run cuts a dataset into batches: the plan of each batch, epoch after epoch.

#include <batchpipe/core/error.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/core/run_options.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// One batch to make: its number across epochs, its epoch and its items' positions.
struct BatchPlan {
  std::size_t number = 0;
  std::size_t epoch = 0;
  std::vector<std::size_t> positions;
};

/// How one epoch is shared out: steps of batch_size * count items, the rank-th batch of each
/// step for each rank, and the last, shorter step split as evenly as it goes (Shard). One
/// process is the case count = 1: full batches, then the remainder.
class EpochLayout {
 public:
  EpochLayout(std::size_t n_items, std::size_t batch_size, bool drop_last, Shard shard)
      : batch_size_(batch_size), shard_(shard) {
    if (shard.count == 0 || shard.rank >= shard.count) {
      throw Error("RunOptions: shard " + std::to_string(shard.rank) + " of " + std::to_string(shard.count) +
                  " does not exist (rank must be below count, count at least 1)");
    }
    // Checked once here: every later product is then bounded by n_items.
    std::size_t step = 0;
    if (__builtin_mul_overflow(batch_size, shard.count, &step)) {
      throw Error("RunOptions: batch_size " + std::to_string(batch_size) + " times the shard count " +
                  std::to_string(shard.count) + " is more items per step than a size can hold");
    }
    full_steps_ = step ? n_items / step : 0;
    rest_ = drop_last || step == 0 ? 0 : n_items % step;
  }

  /// Batches of each rank per epoch: the same for every rank.
  std::size_t batches() const noexcept { return full_steps_ + (rest_ > 0 ? 1 : 0); }

  /// Items this rank sees per epoch.
  std::size_t items() const noexcept { return full_steps_ * batch_size_ + last_part().second; }

  /// This rank's positions of an epoch's order, batch after batch (a single process's: the
  /// order itself; batches() bounds what is taken of it).
  std::vector<std::size_t> positions(std::vector<std::size_t> order) const {
    if (shard_.count == 1) return order;
    std::vector<std::size_t> mine;
    mine.reserve(items());
    const std::size_t step = batch_size_ * shard_.count;
    for (std::size_t s = 0; s < full_steps_; ++s) {
      const auto first = order.begin() + static_cast<std::ptrdiff_t>(s * step + shard_.rank * batch_size_);
      mine.insert(mine.end(), first, first + static_cast<std::ptrdiff_t>(batch_size_));
    }
    const auto [offset, size] = last_part();
    const auto first = order.begin() + static_cast<std::ptrdiff_t>(full_steps_ * step + offset);
    mine.insert(mine.end(), first, first + static_cast<std::ptrdiff_t>(size));
    return mine;
  }

 private:
  /// Offset within the last step and size of this rank's part of it.
  std::pair<std::size_t, std::size_t> last_part() const noexcept {
    const std::size_t even = rest_ / shard_.count;
    const std::size_t extra = rest_ % shard_.count;
    return {shard_.rank * even + std::min(shard_.rank, extra), even + (shard_.rank < extra ? 1 : 0)};
  }

  std::size_t batch_size_;
  Shard shard_;
  std::size_t full_steps_ = 0;
  std::size_t rest_ = 0;
};

/// Cuts positions 0 .. n-1 into batches, epoch after epoch. Every position appears exactly once
/// per epoch (across the shards of a sharded run); the last batch of an epoch is the remainder
/// unless drop_last.
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
        layout_(n_items, options.batch_size, options.drop_last, options.shard.value_or(Shard{})) {
    if (batch_size_ == 0) throw Error("RunOptions: batch_size must be at least 1");
    // An epoch with no batch yields nothing, ever: stop rather than loop forever.
    if ((!endless_ && n_epochs_ == 0) || layout_.batches() == 0) return;
    start_epoch(0);
  }

  /// The next batch's plan, or nothing when the last epoch is done.
  std::optional<BatchPlan> next() {
    if (done_) return std::nullopt;
    if (epoch_batches_ == layout_.batches()) {
      const std::size_t next_epoch = epoch_ + 1;
      if (!endless_ && next_epoch >= n_epochs_) {
        done_ = true;
        order_.clear();
        return std::nullopt;
      }
      start_epoch(next_epoch);
    }
    // A shard's last batch may be shorter than the others, or empty.
    const std::size_t take = std::min(batch_size_, order_.size() - cursor_);
    BatchPlan plan{number_++,
                   epoch_,
                   {order_.begin() + static_cast<std::ptrdiff_t>(cursor_),
                    order_.begin() + static_cast<std::ptrdiff_t>(cursor_ + take)}};
    cursor_ += take;
    ++epoch_batches_;
    return plan;
  }

 private:
  void start_epoch(std::size_t epoch) {
    done_ = false;
    epoch_ = epoch;
    cursor_ = 0;
    epoch_batches_ = 0;
    std::vector<std::size_t> order(n_items_);
    for (std::size_t i = 0; i < n_items_; ++i) order[i] = i;
    if (shuffled_) Random(derive_seed(shuffle_seed_, epoch)).shuffle(order);
    order_ = layout_.positions(std::move(order));
  }

  std::size_t n_items_;
  std::size_t batch_size_;
  bool endless_;
  std::size_t n_epochs_;
  bool shuffled_;
  std::uint64_t shuffle_seed_;
  EpochLayout layout_;
  bool done_ = true;
  std::vector<std::size_t> order_;
  std::size_t cursor_ = 0;
  std::size_t epoch_ = 0;
  std::size_t epoch_batches_ = 0;
  std::size_t number_ = 0;
};

}  // namespace batchpipe::detail
