#pragma once
// One thread budget for a run, shared out between the batches computed at once, LibTorch's
// intra-op threads and OpenBLAS's own pool, so that together they do not oversubscribe the cores.

#include <batchpipe/core/run_options.hpp>

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#if __has_include(<dlfcn.h>)
#include <dlfcn.h>
#endif
#include <thread>
#include <vector>

namespace batchpipe::detail {

/// OpenBLAS's C API, when OpenBLAS is loaded in the process (looked up once; every member is null
/// otherwise, and under another BLAS).
struct OpenBlasApi {
  void (*set_num_threads)(int) = nullptr;
  int (*get_num_threads)() = nullptr;
  int (*get_parallel)() = nullptr;  // 0: sequential, 1: its own pthreads pool, 2: OpenMP
  char* (*get_corename)() = nullptr;

  static const OpenBlasApi& get() {
    static const OpenBlasApi api = [] {
      OpenBlasApi found;
#if __has_include(<dlfcn.h>)
      const auto lookup = [](const char* name) { return dlsym(RTLD_DEFAULT, name); };
      found.get_num_threads = reinterpret_cast<int (*)()>(lookup("openblas_get_num_threads"));
      if (!found.get_num_threads) return found;
      found.set_num_threads = reinterpret_cast<void (*)(int)>(lookup("openblas_set_num_threads"));
      found.get_parallel = reinterpret_cast<int (*)()>(lookup("openblas_get_parallel"));
      found.get_corename = reinterpret_cast<char* (*)()>(lookup("openblas_get_corename"));
#endif
      return found;
    }();
    return api;
  }

  /// Whether LibTorch's matrix products run on OpenBLAS's own pthreads pool, beside LibTorch's
  /// OpenMP team: OpenBLAS is loaded with that pool, and LibTorch does not use MKL (distributions
  /// build LibTorch against the system's generic BLAS, which OpenBLAS provides when installed).
  static bool has_own_pool() {
    const auto& api = get();
    return api.set_num_threads && api.get_parallel && api.get_parallel() == 1 && !at::hasMKL();
  }
};

/// What to tell a user whose OpenBLAS runs generic kernels on a CPU that has better ones:
/// OpenBLAS picks its kernels for the CPU when it loads, and a release older than the CPU falls
/// back to its "Prescott" kernels (SSE3), which multiply matrices 3 to 7 times slower than the
/// AVX2 or AVX-512 ones (measured on a 2-core Xeon with AVX-512 and Debian 12's OpenBLAS 0.3.21:
/// 14 against 86 GFLOP/s on one thread). OPENBLAS_CORETYPE, read when OpenBLAS loads, picks them
/// by name, so only the user can fix it: nothing when it is set already or nothing is amiss.
inline std::optional<std::string> generic_blas_kernels_note(std::string_view corename, bool avx2, bool avx512,
                                                            bool coretype_set) {
  if (coretype_set || corename != "Prescott" || !avx2) return std::nullopt;
  const char* better = avx512 ? "SkylakeX" : "Haswell";
  return "batchpipe: OpenBLAS runs its generic Prescott kernels on this CPU, which has " +
         std::string(avx512 ? "AVX-512" : "AVX2") +
         " (the OpenBLAS release predates the CPU): matrix products run several times slower than "
         "they could. Start the program with OPENBLAS_CORETYPE=" +
         better + " in its environment (or set OPENBLAS_CORETYPE to any value to silence this).";
}

/// Prints generic_blas_kernels_note for this process and CPU on stderr, once per process.
inline void warn_once_if_blas_kernels_are_generic() {
  static std::once_flag once;
  std::call_once(once, [] {
    const auto& api = OpenBlasApi::get();
    if (!api.get_corename) return;
    bool avx2 = false, avx512 = false;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    const auto note = generic_blas_kernels_note(api.get_corename(), avx2, avx512,
                                                std::getenv("OPENBLAS_CORETYPE") != nullptr);
    if (note) std::fprintf(stderr, "%s\n", note->c_str());
  });
}

/// How a run's threads are shared out. The consumer's steps (a singleton training step and what
/// follows it) get the whole budget for LibTorch's kernels, whatever the prefetch, so that one
/// seed gives one result at every prefetch; the batches made ahead on the arena's workers run
/// single-threaded kernels, so that several of them at once stay within the cores.
///
/// Where OpenBLAS runs its own pthreads pool (Debian's and most distributions' LibTorch), the
/// budget goes to that pool, which does the matrix products, and LibTorch's OpenMP team gets one
/// thread: two pools of busy-waiting threads on the same cores hand them back and forth after
/// every kernel. Measured on 2 cores (MLP 784-256-10, batch 256, Adam, items/s): OpenMP 1 and
/// OpenBLAS 2 threads 57k-72k, OpenMP 2 and OpenBLAS 1 50k-67k, both 2 only 22k-38k.
/// Where LibTorch's kernels and the BLAS share one OpenMP team (MKL, OpenBLAS built for OpenMP),
/// that team gets the budget.
struct ThreadBudget {
  std::size_t total = 1;              // the budget: cores the run may use
  std::size_t consumer_intra_op = 1;  // LibTorch intra-op threads on the consumer's thread
  std::size_t worker_intra_op = 1;    // LibTorch intra-op threads in a batch task on a worker
  std::size_t blas = 1;               // OpenBLAS's pool while the run works

  /// Whether the consumer's kernels may use every core of the budget, leaving none to workers.
  bool steps_take_every_core() const { return std::max(consumer_intra_op, blas) >= total; }

  static ThreadBudget from(const RunOptions& options) {
    ThreadBudget budget;
    budget.total =
        options.threads ? options.threads : std::max<std::size_t>(1, std::thread::hardware_concurrency());
    if (options.intra_op_threads) {  // the user's count, for LibTorch and OpenBLAS alike
      budget.consumer_intra_op = budget.worker_intra_op = budget.blas = options.intra_op_threads;
    } else {
      budget.blas = budget.total;
      budget.consumer_intra_op = OpenBlasApi::has_own_pool() ? 1 : budget.total;
    }
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
/// BLAS call runs, so it is leased for a whole run while the run works (not per task). The leases
/// alive form a list in the order they began: the pool has the size of the newest, and when one
/// ends the pool takes the size of the newest left, or, once none is left, the size found before
/// the first. So runs that overlap or nest, ending in any order, leave it as each remaining run
/// asked, and in the end as it was.
class BlasThreadsLease {
 public:
  explicit BlasThreadsLease(int n) {
    if (!OpenBlasApi::get().set_num_threads || n <= 0) return;
    std::scoped_lock lock(state().mutex);
    if (state().leases.empty()) state().original = OpenBlasApi::get().get_num_threads();
    id_ = ++state().next_id;
    state().leases.push_back({id_, n});
    set(n);
  }
  ~BlasThreadsLease() {
    if (!id_) return;
    std::scoped_lock lock(state().mutex);
    auto& leases = state().leases;
    leases.erase(std::find_if(leases.begin(), leases.end(), [&](const Lease& l) { return l.id == id_; }));
    set(leases.empty() ? state().original : leases.back().threads);
  }
  BlasThreadsLease(const BlasThreadsLease&) = delete;
  BlasThreadsLease& operator=(const BlasThreadsLease&) = delete;

 private:
  struct Lease {
    std::uint64_t id;
    int threads;
  };
  struct State {
    std::mutex mutex;
    std::vector<Lease> leases;
    std::uint64_t next_id = 0;
    int original = 0;
  };
  static State& state() {
    static State shared;
    return shared;
  }
  // OpenBLAS built for OpenMP also sets the calling thread's OpenMP count, which is LibTorch's
  // intra-op count there: that one is kept as it was.
  static void set(int n) {
    const auto& api = OpenBlasApi::get();
    if (api.get_num_threads() == n) return;
    const int intra_op = at::get_num_threads();
    api.set_num_threads(n);
    set_intra_op_threads(intra_op);
  }

  std::uint64_t id_ = 0;  // 0: no lease (no OpenBLAS)
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
