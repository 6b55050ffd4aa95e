#pragma once
// The iteration behind next_batch(), one implementation for Dataset and Pipeline: made by the
// first call, continued by later ones and paused between them, so that while the caller works
// the iteration leaves the caller's thread settings (LibTorch's count) alone. OpenBLAS's pool
// keeps the run's size until the iteration ends: its batches may be in a BLAS call meanwhile.

#include <batchpipe/fwd.hpp>

#include <memory>
#include <optional>
#include <utility>

namespace batchpipe::detail {

template <class B>
class KeptIteration {
 public:
  /// The next batch of the iteration, started by `start()` (a BatchStream<B>) when there is none.
  template <class Start>
  std::optional<B> next(Start&& start) {
    // Shared, not unique: the owner's header need not see BatchStream's definition.
    if (!stream_) stream_ = std::make_shared<BatchStream<B>>(std::forward<Start>(start)());
    auto batch = stream_->next();
    stream_->pause();
    return batch;
  }
  /// Forgets the iteration (cancelling what it has in flight): the next call starts a new one.
  void reset() { stream_.reset(); }

 private:
  std::shared_ptr<BatchStream<B>> stream_;
};

}  // namespace batchpipe::detail
