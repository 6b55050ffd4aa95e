#pragma once
// The engine under every pipeline run: batches are made on a oneTBB task arena, up to
// prefetch + 1 of them in flight, and handed to the consumer in index order (or as they finish).
//
// What it guarantees, and how:
// - An exception from a batch reaches the consumer at that batch's turn. Tasks catch everything
//   (an exception escaping a task would abort the process) and park it in the slot.
// - After an error, or when the consumer stops early (destroys the stream), the batches still in
//   flight are cancelled between actions and waited for: nothing runs on after the stream is
//   gone, nothing is delivered twice, nothing stale is delivered.
// - The consumer never blocks where oneTBB cannot see it: it waits for a batch inside the arena
//   (task_group::wait), where it makes batches itself while it waits. So a run inside an action
//   of another run (a worker thread as consumer), or a run whose arena gets no worker at all,
//   still makes progress: nothing hangs for want of a thread.
// - One thread budget: the arena's concurrency and LibTorch's intra-op threads are derived from
//   it so that they do not oversubscribe the cores (see thread_budget.hpp). While the
//   consumer's steps run with every core of the budget, workers wait between actions (TaskGate).
//   The consumer's count is leased on its thread from the run's first batch to its end (or to
//   pause()): an ended or paused stream holds no thread setting and limits nothing in the
//   process. A batch task on a worker sets the workers' count and leaves it: the workers are
//   oneTBB's, and whatever runs on them next sets its own (putting it back after every task
//   would cost a pool rebuild each).

#include <batchpipe/core/detail/batch_sampler.hpp>
#include <batchpipe/core/detail/thread_budget.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/memory.hpp>
#include <batchpipe/core/profile.hpp>
#include <batchpipe/core/run_options.hpp>
#include <batchpipe/detail/item_ranges.hpp>
#include <batchpipe/detail/step_phases.hpp>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// Thrown inside a task that noticed the stream was cancelled; never reaches a user.
struct cancelled_run {};

/// What the batch tasks of one stream check before each action: whether the stream is being torn
/// down, and whether the consumer is running its steps (a singleton action and those after it)
/// on every core of the budget. Then a worker waits, asleep, until the steps end: a batch made
/// ahead would take a core from the steps' kernels (OpenBLAS's threads, which busy-wait for each
/// other, then stall for a whole time slice), and the steps set the run's pace. A stretch of a
/// step whose kernels use the consumer's thread alone (an optimizer's update; WorkersMayPrepare)
/// lets them start actions that use no model meanwhile (one that does could read parameters as
/// the update writes them; one already under way when the steps began runs on, as at any step).
class TaskGate final : public PreparationSwitch {
 public:
  /// Throws cancelled_run once the stream is being torn down; on a worker, first waits while the
  /// consumer's steps hold the cores (for an action that uses a model, `uses_model`, also while
  /// they leave cores free for preparation).
  void before_action(bool on_worker, bool uses_model) const {
    if (on_worker && held(uses_model)) wait_for_steps(uses_model);
    if (cancelled_.load(std::memory_order_relaxed)) throw cancelled_run{};
  }

  bool allow_preparation(bool allowed) override {
    bool before = false;
    {
      // Under the mutex, as end_steps, so that a worker about to wait cannot miss the wake-up.
      std::scoped_lock lock(mutex_);
      before = preparation_allowed_.exchange(allowed, std::memory_order_acq_rel);
    }
    if (allowed) wake_.notify_all();
    return before;
  }

  void cancel() {
    cancelled_.store(true, std::memory_order_relaxed);
    wake_all();
  }

  /// Set while the consumer's steps hold the cores (only where workers hold back).
  const std::atomic<bool>* steps_running_flag() const noexcept { return &steps_running_; }

  /// Closes the gate for the workers while the consumer's steps run (when `hold` is set), and
  /// where `may_free_cores` is set too, gives the consumer's thread the gate as its
  /// steps_preparation_switch meanwhile.
  class StepsRunning {
   public:
    StepsRunning(TaskGate& gate, bool hold, bool may_free_cores)
        : gate_(hold ? &gate : nullptr), switch_before_(steps_preparation_switch) {
      // Set whether or not this run holds its workers: the steps of a run nested in a step of
      // another (at prefetch 0, say) must not open the outer run's gate, whose budget is not theirs.
      steps_preparation_switch = gate_ && may_free_cores ? gate_ : nullptr;
      if (gate_) gate_->steps_running_.store(true, std::memory_order_release);
    }
    ~StepsRunning() {
      steps_preparation_switch = switch_before_;
      if (gate_) gate_->end_steps();
    }
    StepsRunning(const StepsRunning&) = delete;
    StepsRunning& operator=(const StepsRunning&) = delete;

   private:
    TaskGate* gate_;
    PreparationSwitch* switch_before_;
  };

 private:
  bool held(bool uses_model) const {
    return steps_running_.load(std::memory_order_acquire) &&
           (uses_model || !preparation_allowed_.load(std::memory_order_acquire));
  }

  void wait_for_steps(bool uses_model) const {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [&] { return !held(uses_model) || cancelled_.load(std::memory_order_relaxed); });
  }

  void end_steps() {
    {
      // Under the mutex, so that a worker between its check and its wait cannot miss the wake-up.
      std::scoped_lock lock(mutex_);
      steps_running_.store(false, std::memory_order_relaxed);
      preparation_allowed_.store(false, std::memory_order_relaxed);
    }
    wake_.notify_all();
  }

  void wake_all() {
    { std::scoped_lock lock(mutex_); }
    wake_.notify_all();
  }

  std::atomic<bool> cancelled_{false};
  std::atomic<bool> steps_running_{false};
  std::atomic<bool> preparation_allowed_{false};  // only while steps_running_
  mutable std::mutex mutex_;
  mutable std::condition_variable wake_;
};

/// Handed to a batch's work: to call before each action (and before the batch is created).
class BeforeAction {
 public:
  BeforeAction(const TaskGate& gate, bool on_worker) : gate_(&gate), on_worker_(on_worker) {}
  /// Before an action; `uses_model` when it works with a model (false before a batch is made).
  void operator()(bool uses_model) const { gate_->before_action(on_worker_, uses_model); }
  /// True when the batch is made on one of oneTBB's workers, not on the consumer's thread.
  bool on_worker() const noexcept { return on_worker_; }

 private:
  const TaskGate* gate_;
  bool on_worker_;
};

/// How many waits for batches the calling thread is in (a consumer's, or a stream's teardown):
/// the tasks it runs meanwhile, of whichever run shares the arena (a merge's inputs), are not a
/// worker's and leave its thread settings alone (a paused or handed-over stream has no consumer
/// thread of its own, or another one).
inline thread_local int waiting_in_arena = 0;
struct WaitingInArena {
  WaitingInArena() noexcept { ++waiting_in_arena; }
  ~WaitingInArena() { --waiting_in_arena; }
  WaitingInArena(const WaitingInArena&) = delete;
  WaitingInArena& operator=(const WaitingInArena&) = delete;
};

/// A run's oneTBB arena, shared by the prefetchers of the pipelines a merge runs side by side, so
/// that together they keep to the run's one thread budget.
using ArenaPtr = std::shared_ptr<tbb::task_arena>;

/// The arena's concurrency: the whole budget, one slot of it reserved for the consumer, which
/// works in the arena; with prefetch at least one more for a worker to make batches ahead. Never
/// more than oneTBB's worker pool can fill: asking for more gains nothing, and makes oneTBB
/// print a warning on the user's stderr.
inline ArenaPtr make_run_arena(const RunOptions& options) {
  const std::size_t total = ThreadBudget::from(options).total;
  const std::size_t wanted = options.prefetch > 0 ? std::max<std::size_t>(2, total) : total;
  const std::size_t limit = tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
  return std::make_shared<tbb::task_arena>(
      static_cast<int>(std::clamp<std::size_t>(wanted, 1, std::max<std::size_t>(1, limit))), 1);
}

/// Makes values from batch plans on a task arena, with prefetch, and hands them out in order.
template <class T>
class Prefetcher {
 public:
  /// Makes the value of one batch; may throw. It calls `before_action` before each step, which
  /// throws cancelled_run when the stream is being torn down (nobody will take the value) and
  /// holds a worker back while the consumer's steps hold the cores.
  using Work = std::function<T(BatchPlan, const BeforeAction& before_action)>;
  /// Finishes a value on the consumer's thread, in delivery order; may throw. Optional.
  using Finish = std::function<void(T&)>;

  /// `profiler` (optional) is given the consumer's waits for batches made by workers; `arena`
  /// (optional) is the run's, shared with other prefetchers, else the prefetcher makes its own.
  Prefetcher(BatchSampler sampler, Work work, Finish finish, const RunOptions& options,
             ProfilerPtr profiler = nullptr, ArenaPtr arena = nullptr)
      : sampler_(std::move(sampler)),
        work_(std::move(work)),
        finish_(std::move(finish)),
        prefetch_(options.prefetch),
        ordered_(options.ordered),
        budget_(ThreadBudget::from(options)),
        hold_workers_during_steps_(prefetch_ > 0 &&
                                   !options.prepare_during_steps.value_or(!budget_.steps_take_every_core())),
        steps_may_free_cores_(budget_.consumer_intra_op < budget_.total),
        arena_(arena ? std::move(arena) : make_run_arena(options)),
        profiler_(std::move(profiler)) {}

  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  ~Prefetcher() {
    cancel_and_wait();
    consumer_.reset();
  }

  /// The next value, or nothing when the plans are exhausted or after an error was delivered.
  /// Rethrows the exception of the batch whose turn it is.
  std::optional<T> next() {
    if (finished_) return std::nullopt;
    try {
      take_consumer_settings();
      std::optional<T> value = prefetch_ == 0 ? next_inline() : next_prefetched();
      if (value && finish_) {
        const TaskGate::StepsRunning steps(gate_, hold_workers_during_steps_, steps_may_free_cores_);
        on_consumer([&] { finish_(*value); });
      }
      return value;
    } catch (...) {
      // Any error (a batch's, a finishing step's, the sampler's) ends the stream, and nothing it
      // launched outlives it: what is in flight is cancelled and waited for first.
      finished_ = true;
      cancel_and_wait();
      consumer_.reset();
      blas_.reset();
      throw;
    }
  }

  /// Runs f on the consumer's thread inside the arena, with the run's settings, as the steps
  /// after the first singleton run: for the steps after a rebatch or a merge.
  void run_on_consumer(const std::function<void()>& f) {
    take_consumer_settings();
    const TaskGate::StepsRunning steps(gate_, hold_workers_during_steps_, steps_may_free_cores_);
    on_consumer(f);
  }

  /// Puts back the thread settings of the consumer's thread until the next call to next(): for
  /// a stream that is kept between batches while other work runs (Pipeline::next_batch).
  /// OpenBLAS's pool keeps the run's size until the run ends: its batches may go on in the
  /// workers meanwhile, and OpenBLAS's pool may not be resized while one of them is in a BLAS
  /// call (openblas_set_num_threads is not safe beside a running call).
  void pause() {
    consumer_.reset();
    consumer_thread_.store(std::thread::id{});
  }

 private:
  struct Slot {
    BatchPlan plan;
    std::optional<T> value;
    std::exception_ptr error;
    bool started = false;  // under mutex_: make() has begun
    bool done = false;     // under mutex_
    // Isolated: the batch task does not inherit the cancellation of whatever task the consumer
    // runs in (a run inside an action, or inside the user's parallel_for), which would skip the
    // task's body and leave the slot never done.
    tbb::task_group_context context{tbb::task_group_context::isolated};
    tbb::task_group task{context};
  };

  // prefetch 0: the consumer makes each batch itself.
  std::optional<T> next_inline() {
    auto plan = sampler_.next();
    if (!plan) return finish();
    std::optional<T> value;
    on_consumer([&] { value.emplace(work_(std::move(*plan), BeforeAction(gate_, false))); });
    return value;
  }

  // Runs f on the consumer's thread inside the arena (its reserved slot), so that parallel loops
  // in the actions stay within the budget, with the consumer's thread settings.
  template <class F>
  void on_consumer(F&& f) {
    std::exception_ptr error;
    arena_->execute([&] {
      try {
        consumer_->intra_op.apply();
        f();
      } catch (...) {
        error = std::current_exception();  // out of the arena before it is rethrown
      }
    });
    if (error) std::rethrow_exception(error);
  }

  std::optional<T> next_prefetched() {
    while (window_.size() < prefetch_ + 1) {
      auto plan = sampler_.next();
      if (!plan) break;
      launch(std::move(*plan));
    }
    if (window_.empty()) return finish();

    auto ready = next_ready();
    while (ready == window_.end()) {
      // Nothing to deliver yet: wait in the arena for the oldest batch, making batches meanwhile
      // (their time is the actions', so a profile's wait is what remains of it).
      std::optional<Profiler::WaitStart> wait;
      if (profiler_) wait = profiler_->start_wait();
      wait_for(*window_.front());
      if (wait) profiler_->end_wait(*wait);
      ready = next_ready();
      // The task has ended, so the slot must be done: never wait for it again in a loop.
      if (ready == window_.end() && !is_done(*window_.front())) {
        throw Error("batchpipe: a batch task ended without a result (its oneTBB context was cancelled)");
      }
    }
    std::unique_ptr<Slot> slot = std::move(*ready);
    window_.erase(ready);
    if (slot->error) {
      wait_for(*slot);  // done already; a task_group must be waited for before it is destroyed
      std::rethrow_exception(slot->error);  // next() ends the stream
    }
    std::optional<T> value = std::move(slot->value);
    slot->value.reset();
    spare_.push_back(std::move(slot));
    return value;
  }

  // The slot to deliver now, or the window's end when none may go yet. Ordered: the oldest,
  // once done. Unordered: any finished batch, but an error only at its turn in index order, so
  // that every batch before a failing one is delivered first, as in an ordered run.
  typename std::deque<std::unique_ptr<Slot>>::iterator next_ready() {
    std::scoped_lock lock(mutex_);
    const auto front = window_.begin();
    if (ordered_) return (*front)->done ? front : window_.end();
    const auto finished =
        std::find_if(window_.begin(), window_.end(), [](const auto& s) { return s->done && !s->error; });
    if (finished != window_.end()) return finished;
    return (*front)->done ? front : window_.end();
  }

  bool is_done(const Slot& slot) {
    std::scoped_lock lock(mutex_);
    return slot.done;
  }

  // Waits for a slot's task. With a budget of two cores or more the consumer waits in the arena,
  // in the slot the budget keeps for it, and makes batches meanwhile. A budget of one core gets a
  // second slot, for the worker that prefetches; there, while a worker makes a batch of the run,
  // the consumer waits outside the arena, so that one thread at a time prepares batches, as the
  // budget says. When no worker has been on one for a few milliseconds (oneTBB's workers all busy: a
  // run inside another run's action), or the batch's context was cancelled (its body will not
  // run), it waits in the arena, where it makes batches itself.
  void wait_for(Slot& slot) {
    if (budget_.total < 2) {
      std::unique_lock lock(mutex_);
      const auto worker_on_run = [&] {  // a batch begun and not done: a worker is on this run
        return std::any_of(window_.begin(), window_.end(),
                           [](const auto& s) { return s->started && !s->done; });
      };
      auto worker_seen = std::chrono::steady_clock::now();
      while (!slot.done && !slot.context.is_group_execution_cancelled()) {
        const auto now = std::chrono::steady_clock::now();
        if (worker_on_run()) {
          worker_seen = now;
        } else if (now - worker_seen > std::chrono::milliseconds(5)) {
          break;
        }
        slot_done_.wait_for(lock, std::chrono::milliseconds(1));
      }
    }
    const WaitingInArena waiting;
    arena_->execute([&] { slot.task.wait(); });
  }

  void launch(BatchPlan plan) {
    std::unique_ptr<Slot> slot = take_spare_slot();
    slot->plan = std::move(plan);
    // Enqueued (the arena's shared queue, which wakes a worker at once), and counted by the
    // slot's task_group, which the consumer waits on. The slot joins the window only once its
    // task is on its way, so that the window never holds a slot nothing will finish.
    arena_->enqueue(slot->task.defer([this, raw = slot.get()] { make(*raw); }));
    window_.push_back(std::move(slot));
  }

  // A slot whose batch was delivered, or a new one. Reusing slots spares each batch a oneTBB
  // context and a task_group (their set-up and tear-down were a sizeable part of a batch's trip
  // when its actions do little). The slot's last task has set `done` and touches none of the
  // slot's fields after that, but oneTBB may still be counting it down in the slot's task_group:
  // deferring the next task on it meanwhile is allowed, and every slot, spare or not, is waited
  // for before it is destroyed (cancel_and_wait).
  std::unique_ptr<Slot> take_spare_slot() {
    if (spare_.empty()) return std::make_unique<Slot>();
    std::unique_ptr<Slot> slot = std::move(spare_.back());
    spare_.pop_back();
    if (slot->context.is_group_execution_cancelled()) {
      // An action cancelled its oneTBB context: it would skip the next task's body.
      wait_for(*slot);
      slot->context.reset();
    }
    std::scoped_lock lock(mutex_);
    slot->value.reset();
    slot->error = nullptr;
    slot->done = false;
    slot->started = false;
    return slot;
  }

  // One batch task: the batch's work with the run's thread settings, its result parked in the
  // slot. It never throws (an exception escaping a oneTBB task would end the process).
  void make(Slot& slot) noexcept {
    if (budget_.total < 2) {  // read only by wait_for's one-core wait: no lock taken otherwise
      std::scoped_lock lock(mutex_);
      slot.started = true;
    }
    std::optional<T> value;
    std::exception_ptr error;
    try {
      // On the consumer (which makes batches while it waits) the batch keeps the consumer's
      // count: preparation kernels give the same result either way, and switching costs more.
      // Nor does it wait for the steps: it may be inside one (a step that waits for oneTBB work).
      const bool on_worker = std::this_thread::get_id() != consumer_thread_.load() && waiting_in_arena == 0;
      if (on_worker) set_intra_op_threads(static_cast<int>(budget_.worker_intra_op));
      // Nor, on a worker, do its kernels split a pass over the arena while the steps run.
      const HoldItemRangesWhile hold(on_worker ? gate_.steps_running_flag() : item_ranges_held);
      value.emplace(work_(std::move(slot.plan), BeforeAction(gate_, on_worker)));
    } catch (...) {
      error = std::current_exception();
    }
    std::scoped_lock lock(mutex_);
    slot.value = std::move(value);
    slot.error = error;
    slot.done = true;
    slot_done_.notify_all();
  }

  std::optional<T> finish() {
    finished_ = true;
    consumer_.reset();  // the run is over: its settings go with it
    blas_.reset();
    return std::nullopt;
  }

  // The run's settings on the calling thread, which is the consumer's from now on.
  void take_consumer_settings() {
    if (!blas_ && !finished_) {  // once finished, steps after a rebatch may still run: no new lease
      warn_once_if_blas_kernels_are_generic();
      blas_.emplace(static_cast<int>(budget_.blas));
    }
    if (consumer_) return;
    consumer_.emplace(budget_);
    consumer_thread_.store(std::this_thread::get_id());
  }

  void cancel_and_wait() {
    gate_.cancel();
    for (auto& slot : window_) wait_for(*slot);
    window_.clear();
    for (auto& slot : spare_) wait_for(*slot);
    spare_.clear();
  }

  BatchSampler sampler_;
  Work work_;
  Finish finish_;
  std::size_t prefetch_;
  bool ordered_;
  ThreadBudget budget_;
  // Whether workers hold back during the consumer's steps: by default when those take every
  // core of the budget (RunOptions::prepare_during_steps decides otherwise), with prefetch.
  bool hold_workers_during_steps_;
  // Whether LibTorch's own kernels on the consumer leave cores of the budget free, so that a
  // stretch of a step without matrix products (WorkersMayPrepare) can let the workers prepare.
  bool steps_may_free_cores_;
  ArenaPtr arena_;
  // OpenBLAS's pool: from the first batch asked for to the run's end (or its error), pauses
  // included. Declared before the consumer's settings, so that it is released after them.
  std::optional<BlasThreadsLease> blas_;
  // The run's settings on the consumer's thread: from the first batch asked for to the run's end,
  // or to pause().
  struct ConsumerSettings {
    explicit ConsumerSettings(const ThreadBudget& budget) : intra_op(budget.consumer_intra_op) {
      keep_freed_memory_in_process();
    }
    IntraOpThreadsLease intra_op;
  };
  std::optional<ConsumerSettings> consumer_;
  std::atomic<std::thread::id> consumer_thread_{};  // read by the tasks

  std::mutex mutex_;                          // guards the slots' results and done flags
  std::condition_variable slot_done_;         // a slot became done (waited on with a budget of one core)
  std::deque<std::unique_ptr<Slot>> window_;  // launched, not yet delivered; in plan order
  std::vector<std::unique_ptr<Slot>> spare_;  // delivered, to reuse (their tasks may be ending)
  TaskGate gate_;
  ProfilerPtr profiler_;
  bool finished_ = false;
};

}  // namespace batchpipe::detail
