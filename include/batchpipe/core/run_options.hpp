#pragma once
/// @file run_options.hpp
/// @brief RunOptions: how a dataset is cut into batches and how a pipeline runs them; RunStats
/// and RunReport: what a run did.

#include <batchpipe/core/profile.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace batchpipe {

/// @brief `.n_epochs = bp::endless` iterates until the caller stops.
inline constexpr std::nullopt_t endless = std::nullopt;

/// @brief A progress bar on the terminal and a plot of pipeline variables (`RunOptions::progress`).
///
/// @code
/// training.run({.batch_size = 128, .progress = bp::Progress{.variables = {"loss"}, .plot = "loss.svg"}});
/// @endcode
struct Progress {
  /// Pipeline variables shown beside the bar and plotted, as they change: numbers, types with a
  /// numeric `value()` (bp::Accuracy) and vectors of numbers (their last element).
  std::vector<std::string> variables = {};
  /// Where the bar goes. It is drawn only when this is a terminal: in a log or a pipe the run
  /// prints nothing.
  std::FILE* stream = stderr;
  /// An SVG file to write at the run's end (even after an error): each variable over the run's
  /// batches, one panel each. Empty: no plot.
  std::filesystem::path plot = {};
  /// The plot's size in pixels.
  int plot_width = 800;
  int plot_height = 240;  ///< per variable
  /// The least time between two redraws of the bar, in seconds.
  double refresh_seconds = 0.1;
};

/// @brief This process's part of a run shared by several processes (`RunOptions::shard`): every
/// process shuffles with the same seed and takes its own batches, so that together they see each
/// item once per epoch, each in the same number of batches.
///
/// Each epoch's order is cut into steps of `batch_size * count` items; of each step, process
/// `rank` takes the `rank`-th batch. The last, shorter step is split as evenly as the items
/// allow (sizes differ by at most one), so a process may get a smaller last batch, or an empty
/// one when fewer items than processes are left (`drop_last` drops that step instead). Which
/// batches a probabilistic step applies to is the same on every shard; the batches' random
/// streams differ. A pipeline that rebatches cannot be sharded (each shard would be cut into its
/// own number of batches). bp::Distributed::shard() gives the one of a distributed job.
struct Shard {
  std::size_t rank = 0;   ///< this process's shard, 0 .. count - 1
  std::size_t count = 1;  ///< the processes sharing the run
};

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
  /// Drop each epoch's last batch when it is smaller than batch_size (with a shard: the
  /// epoch's last step when it is shorter than batch_size × count, see Shard).
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
  /// Time each action, the making of the batches and the consumer's waits: RunStats::profile.
  bool profile = false;
  /// A progress bar on the terminal and, if asked, a plot of variables (see Progress).
  std::optional<Progress> progress = std::nullopt;
  /// This process's shard of a run shared by several processes (see Shard); unset: every batch.
  std::optional<Shard> shard = std::nullopt;
};

/// @brief What a finished run did.
struct RunStats {
  std::size_t batches = 0;  ///< batches delivered
  std::size_t items = 0;    ///< items in those batches
  std::size_t skipped = 0;  ///< batches an action skipped (Batch::skip): not delivered
  double seconds = 0.0;     ///< wall-clock time from the first batch asked for to now or the end
  std::optional<Profile> profile = std::nullopt;  ///< with RunOptions::profile
};

/// @brief What an after-run hook is told (Pipeline::after): the run's statistics and whether it
/// failed.
struct RunReport {
  /// The run's statistics at its end.
  RunStats stats;
  /// The error that ended the run (an action's, a before-run hook's), or null.
  std::exception_ptr error = nullptr;
  /// True when the batches were not all delivered: the stream was destroyed before its end.
  bool stopped_early = false;
  /// True when an error ended the run.
  bool failed() const noexcept { return error != nullptr; }
};

}  // namespace batchpipe
