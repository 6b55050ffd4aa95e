#pragma once
/// @file parallel.hpp
/// @brief for_each_item: run a function on every item of a batch in parallel (oneTBB), each
/// item with its own random stream, so results do not depend on the thread count.

#include <batchpipe/core/random.hpp>
#include <batchpipe/detail/access.hpp>

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

}  // namespace batchpipe
