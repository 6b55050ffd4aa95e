#pragma once
// One thread budget for a run, shared out between the batches computed at once, LibTorch's
// intra-op threads and OpenBLAS's own pool, so that together they do not oversubscribe the cores.

#include <batchpipe/core/run_options.hpp>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstddef>
#include <mutex>
#if __has_include(<dlfcn.h>)
#include <dlfcn.h>
#endif
#include <thread>

namespace batchpipe::detail {

/// How a run's threads are shared out.
struct ThreadBudget {
  std::size_t total = 1;     // the budget: cores the run may use
  std::size_t batches = 1;   // batches computed at once
  std::size_t intra_op = 1;  // LibTorch intra-op threads

  static ThreadBudget from(const RunOptions& options) {
    ThreadBudget budget;
    budget.total =
        options.threads ? options.threads : std::max<std::size_t>(1, std::thread::hardware_concurrency());
    budget.batches = options.prefetch == 0 ? 1 : std::min(budget.total, options.prefetch + 1);
    budget.intra_op = options.intra_op_threads ? options.intra_op_threads
                                               : std::max<std::size_t>(1, budget.total / budget.batches);
    return budget;
  }
};

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
    if (at::get_num_threads() != intra_op) at::set_num_threads(intra_op);
  }

  bool leased_ = false;
};

/// LibTorch's intra-op thread count for one piece of a run's work on the calling thread (a batch
/// on a worker, a step on the consumer), restored when the piece ends. With OpenMP the count is
/// kept per thread, so a piece of work sets it on its own thread, and restoring it there keeps a
/// run's setting from leaking into other runs, whatever order runs end in. (at::set_num_threads
/// also records a default for threads started later; restoring puts that back too.)
class ScopedThreadSettings {
 public:
  explicit ScopedThreadSettings(std::size_t intra_op) : previous_(at::get_num_threads()) {
    apply(static_cast<int>(intra_op));
  }
  ~ScopedThreadSettings() { apply(previous_); }
  ScopedThreadSettings(const ScopedThreadSettings&) = delete;
  ScopedThreadSettings& operator=(const ScopedThreadSettings&) = delete;

 private:
  // Setting the same value again is skipped: LibTorch's native thread pool (in builds without
  // OpenMP) warns about any change made after parallel work started.
  static void apply(int n) {
    if (n > 0 && n != at::get_num_threads()) at::set_num_threads(n);
  }

  int previous_;
};

}  // namespace batchpipe::detail
