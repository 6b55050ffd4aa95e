#pragma once
/// @file run_options.hpp
/// @brief RunOptions: how a dataset is cut into batches and how a pipeline runs them.

#include <cstddef>
#include <cstdint>
#include <optional>

namespace batchpipe {

/// @brief `.n_epochs = bp::endless` iterates until the caller stops.
inline constexpr std::nullopt_t endless = std::nullopt;

/// @brief Options of one pass over a dataset, written with designated initializers.
///
/// @code
/// pipeline.run({.batch_size = 256, .n_epochs = 5, .shuffle = 42, .prefetch = 2});
/// @endcode
struct RunOptions {
  /// Items per batch (> 0).
  std::size_t batch_size = 32;
  /// Passes over the dataset; `bp::endless` for no end.
  std::optional<std::size_t> n_epochs = 1;
  /// Seed of the shuffle, a new order every epoch; unset keeps the index order.
  std::optional<std::uint64_t> shuffle = std::nullopt;
  /// Seed of the batches' random streams. Unset: the shuffle seed when there is one, otherwise
  /// a fresh seed each run.
  std::optional<std::uint64_t> seed = std::nullopt;
  /// Drop each epoch's last batch when it is smaller than batch_size.
  bool drop_last = false;
  /// Batches computed ahead of the consumer: at most prefetch + 1 in flight. 0 computes each
  /// batch in the calling thread when it is asked for.
  std::size_t prefetch = 0;
  /// Deliver batches in index order (the default) or as soon as each is ready.
  bool ordered = true;
  /// The thread budget shared by the batch workers, LibTorch's intra-op threads and OpenBLAS's
  /// own pool; 0 takes every core.
  std::size_t threads = 0;
  /// LibTorch intra-op threads (and OpenBLAS's pool) during the run, for the consumer's steps and
  /// the batches made ahead alike; 0 derives them from the budget (see
  /// docs/pipelines-and-prefetch.md: the consumer's kernels get the budget, workers one thread).
  std::size_t intra_op_threads = 0;
  /// Whether the workers go on making batches while the consumer runs its steps (the first
  /// singleton action and those after it). Unset: they hold back when the steps' kernels take
  /// every core of the budget (the default budget does), so that no batch takes a core from a
  /// CPU training step. Set it for steps that leave the CPU free (training on a GPU, writing
  /// files) or when preparation costs more than the steps.
  std::optional<bool> prepare_during_steps = std::nullopt;
};

/// @brief What a finished run did.
struct RunStats {
  std::size_t batches = 0;  ///< batches delivered
  std::size_t items = 0;    ///< items in those batches
  double seconds = 0.0;     ///< wall-clock time of Pipeline::run; 0 in BatchStream::stats()
};

}  // namespace batchpipe
