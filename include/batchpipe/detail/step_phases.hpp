#pragma once
// How a consumer's step tells its run that a stretch of it leaves cores free (WorkersMayPrepare,
// in core/parallel.hpp): the run's TaskGate (prefetcher.hpp) is reached through a pointer on the
// consumer's thread, set while the run's steps hold the workers back and the consumer's own
// kernels leave cores of the budget free.

namespace batchpipe::detail {

/// Lets a run's workers, held back during the consumer's steps, prepare batches meanwhile.
class PreparationSwitch {
 public:
  /// Allows (or forbids again) the workers to start actions that use no model; returns whether
  /// they were allowed before.
  virtual bool allow_preparation(bool allowed) = 0;

 protected:
  ~PreparationSwitch() = default;
};

/// The switch of the run whose steps this thread is running; nullptr outside them, or where the
/// steps' kernels take every core.
inline thread_local PreparationSwitch* steps_preparation_switch = nullptr;

}  // namespace batchpipe::detail
