#pragma once
/// @file batch_stream.hpp
/// @brief `BatchStream<B>`: the batches of one run of a pipeline, made on demand.

#include <batchpipe/core/detail/batch_sources.hpp>
#include <batchpipe/core/detail/progress_notifier.hpp>
#include <batchpipe/core/profile.hpp>
#include <batchpipe/core/run_options.hpp>
#include <batchpipe/detail/kept_iteration.hpp>
#include <batchpipe/fwd.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace batchpipe {

namespace detail {
/// What runs around a run's batches: the pipeline's before- and after-run hooks, the progress
/// notifier and the profiler (each may be absent).
struct RunObservers {
  std::vector<std::function<void()>> before;
  std::vector<std::function<void(const RunReport&)>> after;
  std::optional<ProgressNotifier> progress;
  ProfilerPtr profiler;
};
}  // namespace detail

/// @brief The batches of one run of a pipeline, made on demand (with prefetch, on the arena).
///
/// `next()` returns the next batch or nothing at the end; a range-for loop does the same. An
/// action's exception reaches the caller of `next()` (or the loop) as an ActionError at that
/// batch's turn; the stream is over after it. Destroying the stream (leaving a loop with `break`)
/// cancels the batches in flight and waits for the ones running, so nothing outlives it.
///
/// The pipeline's before-run hooks run when the first batch is asked for; its after-run hooks
/// once the stream ends, fails or is destroyed (then after the batches in flight are stopped, and
/// an error of theirs is written to stderr: a destructor cannot throw). A batch an action skipped
/// is not delivered; RunStats::skipped counts it.
///
/// @code
/// for (auto& batch : pipeline.gen_batch({.batch_size = 64, .prefetch = 2})) {
///   if (batch.number() == 10) break;        // returns promptly; nothing runs on
/// }
/// @endcode
template <class B>
class BatchStream {
 public:
  /// Takes over the other stream's run; the moved-from stream must not be used.
  BatchStream(BatchStream&&) noexcept = default;
  /// Takes over the other stream's run, after ending this stream's own (as destroying it would).
  BatchStream& operator=(BatchStream&& other) noexcept {
    if (this != &other) {
      abandon();
      source_ = std::move(other.source_);
      observers_ = std::move(other.observers_);
      seed_ = other.seed_;
      current_ = std::move(other.current_);
      stats_ = std::move(other.stats_);
      start_ = other.start_;
      state_ = other.state_;
    }
    return *this;
  }
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;
  ~BatchStream() { abandon(); }

  /// The next batch, or nothing at the end (or after an error was thrown).
  std::optional<B> next() {
    if (state_ == State::ended) return std::nullopt;
    try {
      if (state_ == State::not_started) start();
      auto batch = source_->next();
      stats_.skipped = source_->skipped();
      if (!batch) {
        end(nullptr, false);
        return batch;
      }
      ++stats_.batches;
      stats_.items += batch->size();
      notify();
      return batch;
    } catch (...) {
      if (state_ != State::ended) end(std::current_exception(), false);  // throws the run's error
      throw;
    }
  }

  /// The seed the batches' random streams derive from (a run without one draws it: this makes
  /// such a run reproducible).
  std::uint64_t seed() const noexcept { return seed_; }

  /// Batches and items delivered and skipped so far, the time since the first batch was asked
  /// for (to the end, once the stream is over) and, with RunOptions::profile, the profile.
  RunStats stats() const {
    if (state_ == State::ended) return stats_;
    RunStats now = stats_;
    now.seconds = elapsed();
    if (observers_ && observers_->profiler) now.profile = observers_->profiler->result(now.seconds);
    return now;
  }

  /// @brief The iterator of a range-for loop over the stream; it equals end() once the stream ends.
  class iterator {
   public:
    /// The batch class.
    using value_type = B;
    /// Required of an iterator; unused.
    using difference_type = std::ptrdiff_t;
    /// An iterator of no stream, to assign to before use.
    iterator() = default;
    /// The current batch, kept by the stream until the next `++` replaces it.
    B& operator*() const { return *stream_->current_; }
    /// The current batch's members.
    B* operator->() const { return &*stream_->current_; }
    /// Releases the current batch, then takes the next from the stream; an action's error is
    /// thrown here (see BatchStream).
    iterator& operator++() {
      // Released first: a loop holds at most prefetch + 1 batches, the one it holds included.
      stream_->current_.reset();
      stream_->current_ = stream_->next();
      return *this;
    }
    /// Takes the next batch, like `++it`, and returns nothing.
    void operator++(int) { ++*this; }
    /// True once the stream is over: `it == stream.end()`.
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class BatchStream;
    explicit iterator(BatchStream* stream) : stream_(stream) {}
    bool at_end() const { return !stream_->current_; }
    BatchStream* stream_ = nullptr;
  };

  /// Takes the next batch from the stream and returns an iterator at it: a second loop over the
  /// stream goes on after the batch where the first stopped.
  iterator begin() {
    current_ = next();
    return iterator(this);
  }
  /// The sentinel an iterator equals once the stream is over.
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  friend class Pipeline<B>;
  friend class detail::KeptIteration<B>;
  BatchStream(detail::BatchSourcePtr<B> source, std::uint64_t seed,
              std::unique_ptr<detail::RunObservers> observers)
      : source_(std::move(source)), observers_(std::move(observers)), seed_(seed) {}

  enum class State { not_started, running, ended };

  // Hands back the run's thread settings until the next batch is asked for.
  void pause() {
    if (source_) source_->pause();
  }

  double elapsed() const {
    return state_ == State::not_started
               ? 0.0
               : std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  void start() {
    start_ = std::chrono::steady_clock::now();
    state_ = State::running;
    for (const auto& hook : observers_->before) hook();
  }

  void notify() {
    if (observers_->progress) observers_->progress->update(stats_, elapsed());
  }

  // The run is over: its last statistics, the notifier's last line and plot, the after-run hooks.
  // The run's error (if any) is thrown after them; a hook's error is thrown too, with the run's
  // error named in it so that neither is lost.
  void end(std::exception_ptr error, bool stopped_early) {
    stats_ = stats();
    state_ = State::ended;
    if (error) {
      // Whatever failed (a step after a rebatch, a merge's check), nothing still in flight may
      // run beside the after-run hooks: the batches are cancelled and waited for first.
      source_.reset();
    } else if (source_) {
      source_->pause();  // the run's thread settings go with it
    }
    std::exception_ptr hook_error;
    auto guarded = [&](auto&& f) {
      try {
        f();
      } catch (...) {
        if (!hook_error) hook_error = std::current_exception();
      }
    };
    if (observers_->progress) guarded([&] { observers_->progress->finish(stats_, stats_.seconds); });
    const RunReport report{stats_, error, stopped_early};
    for (const auto& hook : observers_->after) guarded([&] { hook(report); });
    if (!hook_error) {
      if (error) std::rethrow_exception(error);
      return;
    }
    if (!error) std::rethrow_exception(hook_error);
    try {
      std::rethrow_exception(error);
    } catch (...) {
      std::throw_with_nested(Error("the run failed (" + detail::current_exception_message() +
                                   "), and then so did an after-run step: " + message_of(hook_error)));
    }
  }

  static std::string message_of(const std::exception_ptr& error) {
    try {
      std::rethrow_exception(error);
    } catch (...) {
      return detail::current_exception_message();
    }
  }

  // A stream destroyed (or assigned over) before its end: the batches in flight are stopped
  // first, then the after-run hooks run, told the run stopped early.
  void abandon() noexcept {
    if (state_ != State::running || !observers_) return;  // not started, over, or moved from
    source_.reset();
    try {
      end(nullptr, true);
    } catch (...) {
      std::fprintf(stderr, "batchpipe: an after-run step failed as the stream was destroyed: %s\n",
                   detail::current_exception_message().c_str());
    }
  }

  detail::BatchSourcePtr<B> source_;
  std::unique_ptr<detail::RunObservers> observers_;
  std::uint64_t seed_;
  std::optional<B> current_;
  RunStats stats_;
  std::chrono::steady_clock::time_point start_{};
  State state_ = State::not_started;
};

}  // namespace batchpipe
