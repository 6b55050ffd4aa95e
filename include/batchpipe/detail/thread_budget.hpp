#pragma once
// One thread budget for a run, shared out between the batches computed at once, LibTorch's
// intra-op threads and OpenBLAS's own pool, so that together they do not oversubscribe the cores.

#include <batchpipe/core/run_options.hpp>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#if __has_include(<dlfcn.h>)
#include <dlfcn.h>
#endif
#include <thread>
#include <vector>

namespace batchpipe::detail {

/// How a run's threads are shared out. The consumer's steps (a singleton training step and what
/// follows it) get the whole budget for LibTorch's kernels, whatever the prefetch, so that one
/// seed gives one result at every prefetch; the batches made ahead on the arena's workers run
/// single-threaded kernels, so that several of them at once stay within the cores.
struct ThreadBudget {
  std::size_t total = 1;              // the budget: cores the run may use
  std::size_t consumer_intra_op = 1;  // LibTorch intra-op threads on the consumer's thread
  std::size_t worker_intra_op = 1;    // LibTorch intra-op threads in a batch task on a worker

  static ThreadBudget from(const RunOptions& options) {
    ThreadBudget budget;
    budget.total =
        options.threads ? options.threads : std::max<std::size_t>(1, std::thread::hardware_concurrency());
    budget.consumer_intra_op = options.intra_op_threads ? options.intra_op_threads : budget.total;
    budget.worker_intra_op = options.intra_op_threads ? options.intra_op_threads : 1;
    return budget;
  }
};

/// Sets LibTorch's intra-op thread count of the calling thread, when it differs. Setting the same
/// value again is skipped: it costs as much as a change, and LibTorch's native thread pool (in
/// builds without OpenMP) warns about any change made after parallel work started.
inline void set_intra_op_threads(int threads) {
  if (threads > 0 && threads != at::get_num_threads()) at::set_num_threads(threads);
}

/// OpenBLAS runs its own thread pool beside LibTorch's, sized to every core, and LibTorch does
/// not resize it: left alone it oversubscribes the cores as soon as two batches multiply
/// matrices at once. Its size is global to the process, and OpenBLAS cannot change it while a
/// BLAS call runs, so it is leased for a whole run while the run works (not per task): the first
/// lease sets it and remembers the size found, leases that overlap set theirs, and the last one
/// to end puts the size found back, so that runs that overlap or nest never leave it changed.
class BlasThreadsLease {
 public:
  explicit BlasThreadsLease(int n) {
    if (!blas().set || n <= 0) return;
    std::scoped_lock lock(state().mutex);
    if (state().leases++ == 0) state().original = blas().get();
    set(n);
    leased_ = true;
  }
  ~BlasThreadsLease() {
    if (!leased_) return;
    std::scoped_lock lock(state().mutex);
    if (--state().leases == 0) set(state().original);
  }
  BlasThreadsLease(const BlasThreadsLease&) = delete;
  BlasThreadsLease& operator=(const BlasThreadsLease&) = delete;

 private:
  struct Api {
    void (*set)(int) = nullptr;
    int (*get)() = nullptr;
  };
  struct State {
    std::mutex mutex;
    int leases = 0;
    int original = 0;
  };
  // OpenBLAS's C API, when OpenBLAS is loaded in the process (looked up once).
  static const Api& blas() {
    static const Api api = [] {
      Api found;
#if __has_include(<dlfcn.h>)
      found.get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
      if (found.get)
        found.set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
#endif
      return found;
    }();
    return api;
  }
  static State& state() {
    static State shared;
    return shared;
  }
  // OpenBLAS built for OpenMP also sets the calling thread's OpenMP count, which is LibTorch's
  // intra-op count there: that one is kept as it was.
  static void set(int n) {
    if (blas().get() == n) return;
    const int intra_op = at::get_num_threads();
    blas().set(n);
    set_intra_op_threads(intra_op);
  }

  bool leased_ = false;
};

/// LibTorch's intra-op thread count, leased on the calling thread for a piece of a run's work: a
/// run's consumer steps (from its first batch to its end) or one batch task on a worker. With
/// OpenMP the count is kept per thread, so a lease sets it on its own thread only.
///
/// Changing the count is expensive (LibTorch rebuilds its thread pools: about a millisecond here),
/// so a lease does not put the count back after every step: the leases alive on a thread form a
/// stack, and only the lease on top puts back, when it ends, the count found when it began. A
/// lease that ends below the top hands the count it found to the lease above it, so that leases
/// ending in any order (overlapping streams, a run nested in another's action) leave the thread
/// as they found it once the last one ends, and never in between with a count no run asked for.
class IntraOpThreadsLease {
 public:
  explicit IntraOpThreadsLease(std::size_t threads)
      : threads_(static_cast<int>(threads)), leases_(thread_leases()), id_(next_id()) {
    {
      std::scoped_lock lock(leases_->mutex);
      leases_->stack.push_back({id_, at::get_num_threads()});
    }
    apply();
  }
  ~IntraOpThreadsLease() {
    std::optional<int> restore;
    {
      std::scoped_lock lock(leases_->mutex);
      auto& stack = leases_->stack;
      const auto it = std::find_if(stack.begin(), stack.end(), [&](const Entry& e) { return e.id == id_; });
      if (std::next(it) == stack.end()) {
        restore = it->found;
      } else {
        std::next(it)->found = it->found;
      }
      stack.erase(it);
    }
    // Only on the thread that took the lease: a count can be set for the calling thread only.
    if (restore && leases_ == thread_leases()) set_intra_op_threads(*restore);
  }
  IntraOpThreadsLease(const IntraOpThreadsLease&) = delete;
  IntraOpThreadsLease& operator=(const IntraOpThreadsLease&) = delete;

  /// Sets the leased count again (at each step: something between the steps may have changed it).
  void apply() const { set_intra_op_threads(threads_); }

 private:
  struct Entry {
    std::uint64_t id;
    int found;  // the count to put back when this lease ends on top
  };
  // Shared, so that a lease that ends on another thread (a stream handed over) still finds it.
  struct Leases {
    std::mutex mutex;
    std::vector<Entry> stack;
  };
  static const std::shared_ptr<Leases>& thread_leases() {
    thread_local const auto leases = std::make_shared<Leases>();
    return leases;
  }
  static std::uint64_t next_id() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
  }
  int threads_;
  std::shared_ptr<Leases> leases_;
  std::uint64_t id_;
};

}  // namespace batchpipe::detail
