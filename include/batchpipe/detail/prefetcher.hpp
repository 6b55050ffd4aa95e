#pragma once
// The engine under every pipeline run: batches are made on a oneTBB task arena, up to
// prefetch + 1 of them in flight, and handed to the consumer in index order (or as they finish).
//
// What it guarantees, and how:
// - An exception from a batch reaches the consumer at that batch's turn. Tasks catch everything
//   (an exception escaping an enqueued task would abort the process) and park it in the slot.
// - After an error, or when the consumer stops early (destroys the stream), the batches still in
//   flight are cancelled between actions and waited for: nothing runs on after the stream is
//   gone, nothing is delivered twice, nothing stale is delivered.
// - One thread budget: the arena's concurrency and LibTorch's intra-op threads are derived from
//   it so that they do not oversubscribe the cores (see thread_budget.hpp).

#include <batchpipe/core/run_options.hpp>
#include <batchpipe/detail/batch_sampler.hpp>
#include <batchpipe/detail/thread_budget.hpp>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace batchpipe::detail {

/// Thrown inside a task that noticed the stream was cancelled; never reaches a user.
struct cancelled_run {};

/// Makes values from batch plans on a task arena, with prefetch, and hands them out in order.
template <class T>
class Prefetcher {
 public:
  /// Makes the value of one batch; may throw. Between steps it should throw cancelled_run once
  /// `cancelled` is set: the stream is being torn down and nobody will take the value.
  using Work = std::function<T(BatchPlan, const std::atomic<bool>& cancelled)>;
  /// Finishes a value on the consumer's thread, in delivery order; may throw. Optional.
  using Finish = std::function<void(T&)>;

  Prefetcher(BatchSampler sampler, Work work, Finish finish, const RunOptions& options)
      : sampler_(std::move(sampler)),
        work_(std::move(work)),
        finish_(std::move(finish)),
        prefetch_(options.prefetch),
        ordered_(options.ordered),
        budget_(ThreadBudget::from(options)),
        intra_op_(budget_.intra_op),
        consumer_slots_(prefetch_ == 0 || finish_ ? 1 : 0),
        arena_size_(arena_size(prefetch_, budget_, consumer_slots_)),
        workers_(std::in_place, tbb::global_control::max_allowed_parallelism,
                 arena_size_ - consumer_slots_ + 1),
        arena_(static_cast<int>(arena_size_), static_cast<unsigned>(consumer_slots_)) {}

  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  ~Prefetcher() { cancel_and_wait(); }

  /// The next value, or nothing when the plans are exhausted or after an error was delivered.
  /// Rethrows the exception of the batch whose turn it is.
  std::optional<T> next() {
    if (finished_) return std::nullopt;
    std::optional<T> value = prefetch_ == 0 ? next_inline() : next_prefetched();
    if (value && finish_) finish_on_consumer(*value);
    return value;
  }

 private:
  struct Slot {
    BatchPlan plan;
    std::optional<T> value;
    std::exception_ptr error;
    bool done = false;
  };

  // prefetch 0: the consumer makes each batch itself.
  std::optional<T> next_inline() {
    auto plan = sampler_.next();
    if (!plan) return finish();
    std::optional<T> value;
    on_consumer([&] { value.emplace(work_(std::move(*plan), cancelled_)); });
    return value;
  }

  void finish_on_consumer(T& value) {
    on_consumer([&] { finish_(value); });
  }

  // Runs f on the consumer's thread inside the arena (its reserved slot), so that parallel loops
  // in the actions stay within the budget. An exception ends the stream: what is in flight is
  // cancelled and waited for, then the exception goes to the consumer.
  template <class F>
  void on_consumer(F&& f) {
    std::exception_ptr error;
    arena_.execute([&] {
      try {
        f();
      } catch (...) {
        error = std::current_exception();
      }
    });
    if (error) {
      finished_ = true;
      cancel_and_wait();
      std::rethrow_exception(error);
    }
  }

  std::optional<T> next_prefetched() {
    while (window_.size() < prefetch_ + 1) {
      auto plan = sampler_.next();
      if (!plan) break;
      launch(std::move(*plan));
    }
    if (window_.empty()) return finish();

    std::unique_ptr<Slot> slot;
    {
      std::unique_lock lock(mutex_);
      typename std::deque<std::unique_ptr<Slot>>::iterator ready;
      done_.wait(lock, [&] {
        ready = ordered_
                    ? window_.begin()
                    : std::find_if(window_.begin(), window_.end(), [](const auto& s) { return s->done; });
        return ready != window_.end() && (*ready)->done;
      });
      slot = std::move(*ready);
      window_.erase(ready);
    }
    if (slot->error) {
      finished_ = true;
      cancel_and_wait();
      std::rethrow_exception(slot->error);
    }
    return std::move(slot->value);
  }

  void launch(BatchPlan plan) {
    window_.push_back(std::make_unique<Slot>(Slot{std::move(plan), {}, {}, false}));
    Slot* slot = window_.back().get();
    {
      std::scoped_lock lock(mutex_);
      ++in_flight_;
    }
    arena_.enqueue([this, slot] {
      std::optional<T> value;
      std::exception_ptr error;
      try {
        if (cancelled_.load(std::memory_order_relaxed)) throw cancelled_run{};
        IntraOpThreads::apply(static_cast<int>(budget_.intra_op));
        value.emplace(work_(std::move(slot->plan), cancelled_));
      } catch (...) {
        error = std::current_exception();
      }
      std::scoped_lock lock(mutex_);
      slot->value = std::move(value);
      slot->error = error;
      slot->done = true;
      --in_flight_;
      // Notify under the lock: once in_flight_ is 0 the destructor may free this object as soon as
      // it can take the lock.
      done_.notify_all();
    });
  }

  // The arena holds the whole budget. When the consumer works in it (no prefetch, or finishing
  // steps) it takes one reserved slot, and with prefetch at least one worker must remain to
  // make batches ahead.
  static std::size_t arena_size(std::size_t prefetch, const ThreadBudget& budget,
                                std::size_t consumer_slots) {
    return prefetch > 0 && consumer_slots > 0 ? std::max<std::size_t>(2, budget.total) : budget.total;
  }

  std::optional<T> finish() {
    finished_ = true;
    return std::nullopt;
  }

  void cancel_and_wait() {
    cancelled_.store(true, std::memory_order_relaxed);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return in_flight_ == 0; });
    window_.clear();
  }

  BatchSampler sampler_;
  Work work_;
  Finish finish_;
  std::size_t prefetch_;
  bool ordered_;
  ThreadBudget budget_;
  IntraOpThreads intra_op_;
  std::size_t consumer_slots_;
  std::size_t arena_size_;
  // oneTBB allows one worker fewer than the cores by default (it counts the main thread); this
  // lets the arena have the workers the budget gives it. A stricter limit set by the
  // application still wins: oneTBB applies the smallest active one.
  std::optional<tbb::global_control> workers_;
  tbb::task_arena arena_;

  std::mutex mutex_;
  std::condition_variable done_;
  std::deque<std::unique_ptr<Slot>> window_;  // launched, not yet delivered; in plan order
  std::size_t in_flight_ = 0;
  std::atomic<bool> cancelled_{false};
  bool finished_ = false;
};

}  // namespace batchpipe::detail
