#pragma once
// One thread budget for a run, shared out between the batches computed at once, LibTorch's
// intra-op threads and OpenBLAS's own pool, so that together they do not oversubscribe the cores.

#include <batchpipe/core/run_options.hpp>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstddef>
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
/// matrices at once. Its size is set through its C API when OpenBLAS is loaded in the process.
class BlasThreads {
 public:
  explicit BlasThreads(int n) {
#if __has_include(<dlfcn.h>)
    set_ = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    if (set_ && get) {
      previous_ = get();
      if (previous_ != n) set_(n);
    }
#else
    (void)n;
#endif
  }
  ~BlasThreads() {
    if (set_ && previous_ > 0) set_(previous_);
  }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  void (*set_)(int) = nullptr;
  int previous_ = 0;
};

/// Sets LibTorch's intra-op thread count for the lifetime of a run, then restores it.
class IntraOpThreads {
 public:
  explicit IntraOpThreads(std::size_t n) : previous_(at::get_num_threads()), blas_(static_cast<int>(n)) {
    apply(static_cast<int>(n));
  }
  ~IntraOpThreads() { apply(previous_); }
  IntraOpThreads(const IntraOpThreads&) = delete;
  IntraOpThreads& operator=(const IntraOpThreads&) = delete;

  /// Sets the count for the calling thread. With OpenMP the count is kept per thread (a worker
  /// keeps what it was first given), so each task applies the run's count on its own thread.
  /// Setting the same value again is skipped: LibTorch's native thread pool warns about any
  /// change made after parallel work started.
  static void apply(int n) {
    if (n > 0 && n != at::get_num_threads()) at::set_num_threads(n);
  }

 private:
  int previous_;
  BlasThreads blas_;
};

}  // namespace batchpipe::detail
