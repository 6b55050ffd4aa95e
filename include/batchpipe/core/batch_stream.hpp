#pragma once
/// @file batch_stream.hpp
/// @brief `BatchStream<B>`: the batches of one run of a pipeline, made on demand.

#include <batchpipe/core/run_options.hpp>
#include <batchpipe/detail/prefetcher.hpp>
#include <batchpipe/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

namespace batchpipe {

/// @brief The batches of one run of a pipeline, made on demand (with prefetch, on the arena).
///
/// `next()` returns the next batch or nothing at the end; a range-for loop does the same. An
/// action's exception reaches the caller of `next()` (or the loop) as an ActionError at that
/// batch's turn; the stream is over after it. Destroying the stream (leaving a loop with `break`)
/// cancels the batches in flight and waits for the ones running, so nothing outlives it.
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
  /// Takes over the other stream's run, after cancelling this stream's own (as destroying it would).
  BatchStream& operator=(BatchStream&&) noexcept = default;

  /// The next batch, or nothing at the end (or after an error was thrown).
  std::optional<B> next() {
    auto batch = prefetcher_->next();
    if (batch) {
      ++stats_.batches;
      stats_.items += batch->size();
    }
    return batch;
  }

  /// Batches and items delivered so far.
  const RunStats& stats() const noexcept { return stats_; }

  /// The seed the batches' random streams derive from.
  std::uint64_t seed() const noexcept { return seed_; }

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
    /// Takes the next batch from the stream; an action's error is thrown here (see BatchStream).
    iterator& operator++() {
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
  BatchStream(std::unique_ptr<detail::Prefetcher<B>> prefetcher, std::uint64_t seed)
      : prefetcher_(std::move(prefetcher)), seed_(seed) {}

  // Hands back the run's thread settings until the next batch is asked for.
  void pause() { prefetcher_->pause(); }

  std::unique_ptr<detail::Prefetcher<B>> prefetcher_;
  std::uint64_t seed_;
  std::optional<B> current_;
  RunStats stats_;
};

}  // namespace batchpipe
