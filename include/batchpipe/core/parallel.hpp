#pragma once
/// @file parallel.hpp
/// @brief for_each_item: run a function on every item of a batch in parallel (oneTBB), each
/// item with its own random stream, so results do not depend on the thread count.
/// WorkersMayPrepare: a stretch of a training step that leaves cores to the batches made ahead.

#include <batchpipe/core/random.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/step_phases.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <cstddef>

namespace batchpipe {

/// @brief Calls `f(i, rng)` for every item i of the batch, in parallel on the run's arena.
///
/// Item i's `rng` is derived from one draw of the batch's stream and from i, so a seed gives the
/// same draws whatever the number of threads or their schedule. Each call of for_each_item takes
/// a new draw, so two calls in one action see different item streams. An exception from f
/// reaches the caller (the first one, if several items throw).
///
/// @code
/// ACTION(jitter)() {
///   auto& images = (*this)["images"];
///   bp::for_each_item(*this, [&](std::size_t i, bp::Random& rng) {
///     images[static_cast<int64_t>(i)].add_(static_cast<float>(rng.uniform() - 0.5));
///   });
/// }
/// @endcode
template <class BatchType, class F>
void for_each_item(BatchType& batch, F&& f) {
  detail::access::settle_components(batch);  // f's reads from many threads then only read
  const Random items(batch.random()());
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, batch.size()),
                    [&](const tbb::blocked_range<std::size_t>& range) {
                      for (std::size_t i = range.begin(); i != range.end(); ++i) {
                        Random rng = items.split(i);
                        f(i, rng);
                      }
                    });
}

/// @brief In a singleton step, marks a stretch whose kernels run on the consuming thread alone
/// (an optimizer's update: elementwise, no matrix products), so that the workers, which hold back
/// while the steps take every core, prepare batches meanwhile.
///
/// With prefetch and the default budget a training step's matrix products take every core, so
/// the workers wait for the steps to end; an optimizer's update runs LibTorch's elementwise
/// kernels on the consumer's one intra-op thread (where OpenBLAS has the budget), and the other
/// cores idle. train_step puts its `optimizer.step()` in one; do the same in a step of your own.
/// Workers start only actions that use no model meanwhile (one that does could read parameters
/// as the update writes them); an action that uses a module without declaring it (`.model`) must
/// not come before the step. Outside a run's steps, without prefetch, or where the consumer's
/// kernels take every core (`intra_op_threads` set to the budget, a BLAS that shares LibTorch's
/// OpenMP team), it does nothing.
///
/// @code
/// ACTION(train, .model = "net", .singleton = true)(Net& m) {
///   m.optimizer.zero_grad();
///   torch::nn::functional::cross_entropy(m.module->forward(get("images")), get("labels")).backward();
///   const bp::WorkersMayPrepare during_the_update;
///   m.optimizer.step();
/// }
/// @endcode
class WorkersMayPrepare {
 public:
  WorkersMayPrepare() : switch_(detail::steps_preparation_switch) {
    if (switch_) allowed_before_ = switch_->allow_preparation(true);
  }
  ~WorkersMayPrepare() {
    if (switch_) switch_->allow_preparation(allowed_before_);
  }
  WorkersMayPrepare(const WorkersMayPrepare&) = delete;
  WorkersMayPrepare& operator=(const WorkersMayPrepare&) = delete;

 private:
  detail::PreparationSwitch* switch_;
  bool allowed_before_ = false;
};

}  // namespace batchpipe
