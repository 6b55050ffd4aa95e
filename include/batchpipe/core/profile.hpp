#pragma once
/// @file profile.hpp
/// @brief Per-action profiles of a run (`RunOptions::profile`): the time each action took, on
/// the workers and on the consumer, and the time the consumer waited for batches.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace batchpipe {

/// @brief The time one step of a pipeline took over a run.
struct ActionProfile {
  std::string action;                ///< the action's name; "<create batch>" for loading the items
  std::size_t step = 0;              ///< its place in the pipeline (0 = the first action)
  std::size_t batches = 0;           ///< batches it ran on (a skipped or unapplied step does not count)
  double seconds_on_workers = 0.0;   ///< time on oneTBB's workers (batches made ahead)
  double seconds_on_consumer = 0.0;  ///< time on the thread that asked for the batches
  /// Time on every thread together.
  double seconds() const noexcept { return seconds_on_workers + seconds_on_consumer; }
  /// Mean time per batch it ran on.
  double seconds_per_batch() const noexcept {
    return batches ? seconds() / static_cast<double>(batches) : 0.0;
  }
};

/// @brief Where a run's time went: each step (and the making of the batches), the consumer's
/// waits, the wall-clock time.
///
/// On the consumer's thread the time adds up: its steps, the batches it made itself (prefetch 0,
/// or while it waited) and its waits for the workers account for the run's time, less what the
/// caller did with each batch and the run's set-up. Worker time runs beside it, so the sum over
/// every thread may exceed the run's time.
struct Profile {
  /// One row per step, in pipeline order, after the row of "<create batch>".
  std::vector<ActionProfile> actions;
  /// Time the consumer spent waiting for batches made by workers.
  double consumer_wait_seconds = 0.0;
  /// The run's wall-clock time, from its first batch asked for to its end.
  double run_seconds = 0.0;

  /// The row's share of the run: its time on every thread over the run's wall-clock time.
  double share(const ActionProfile& row) const noexcept {
    return run_seconds > 0 ? row.seconds() / run_seconds : 0.0;
  }

  /// Time on the consumer's thread: its steps, the batches it made and its waits.
  double consumer_seconds() const noexcept {
    double total = consumer_wait_seconds;
    for (const auto& row : actions) total += row.seconds_on_consumer;
    return total;
  }

  /// The profile as a table, one line per row, aligned for a terminal.
  std::string table() const {
    std::string text;
    char line[200];
    std::snprintf(line, sizeof line, "%-4s %-24s %9s %11s %11s %11s %13s %7s\n", "step", "action", "batches",
                  "total s", "workers s", "consumer s", "ms per batch", "share");
    text += line;
    for (const auto& row : actions) {
      const std::string step = row.action == "<create batch>" ? "-" : std::to_string(row.step);
      std::snprintf(line, sizeof line, "%-4s %-24.24s %9zu %11.3f %11.3f %11.3f %13.3f %6.1f%%\n",
                    step.c_str(), row.action.c_str(), row.batches, row.seconds(), row.seconds_on_workers,
                    row.seconds_on_consumer, 1000 * row.seconds_per_batch(), 100 * share(row));
      text += line;
    }
    std::snprintf(line, sizeof line, "consumer waited %.3f s for batches; run %.3f s\n",
                  consumer_wait_seconds, run_seconds);
    text += line;
    return text;
  }
};

namespace detail {

/// Collects a run's profile from the threads that run its steps: one counter set per row,
/// updated with relaxed atomics (rows are only read once the run is over).
class Profiler {
 public:
  using clock = std::chrono::steady_clock;

  /// Row 0 is the making of the batches; row i + 1 is step i.
  explicit Profiler(const std::vector<std::string>& step_names) : rows_(step_names.size() + 1) {
    names_.reserve(rows_.size());
    names_.push_back("<create batch>");
    names_.insert(names_.end(), step_names.begin(), step_names.end());
  }

  /// Adds the time since `start` to row `row`, on a worker or on the consumer.
  void record(std::size_t row, clock::time_point start, bool on_worker) noexcept {
    const auto nanoseconds =
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - start).count();
    Row& counters = rows_[row];
    (on_worker ? counters.worker_ns : counters.consumer_ns).fetch_add(nanoseconds, std::memory_order_relaxed);
    counters.batches.fetch_add(1, std::memory_order_relaxed);
    if (!on_worker) consumer_ns_.fetch_add(nanoseconds, std::memory_order_relaxed);
  }

  /// Where a wait of the consumer's began.
  struct WaitStart {
    clock::time_point at;
    std::int64_t consumer_ns;
  };
  WaitStart start_wait() const noexcept {
    return {clock::now(), consumer_ns_.load(std::memory_order_relaxed)};
  }

  /// Adds a wait of the consumer's, less the time it spent meanwhile making batches itself (the
  /// consumer works while it waits; that time is already the actions').
  void end_wait(const WaitStart& start) noexcept {
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - start.at).count();
    const auto working = consumer_ns_.load(std::memory_order_relaxed) - start.consumer_ns;
    wait_ns_.fetch_add(std::max<std::int64_t>(0, elapsed - working), std::memory_order_relaxed);
  }

  /// The profile so far, for a run that has lasted `run_seconds`.
  Profile result(double run_seconds) const {
    Profile profile;
    profile.run_seconds = run_seconds;
    profile.consumer_wait_seconds = seconds(wait_ns_);
    for (std::size_t i = 0; i < rows_.size(); ++i) {
      profile.actions.push_back({names_[i], i == 0 ? 0 : i - 1,
                                 rows_[i].batches.load(std::memory_order_relaxed),
                                 seconds(rows_[i].worker_ns), seconds(rows_[i].consumer_ns)});
    }
    return profile;
  }

 private:
  struct Row {
    std::atomic<std::int64_t> worker_ns{0};
    std::atomic<std::int64_t> consumer_ns{0};
    std::atomic<std::size_t> batches{0};
  };
  static double seconds(const std::atomic<std::int64_t>& nanoseconds) {
    return static_cast<double>(nanoseconds.load(std::memory_order_relaxed)) * 1e-9;
  }

  std::vector<std::string> names_;
  std::vector<Row> rows_;
  std::atomic<std::int64_t> wait_ns_{0};
  std::atomic<std::int64_t> consumer_ns_{0};  // every row's consumer time together
};

using ProfilerPtr = std::shared_ptr<Profiler>;

}  // namespace detail
}  // namespace batchpipe
