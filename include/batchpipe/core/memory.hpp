#pragma once
/// @file memory.hpp
/// @brief Memory freed between batches stays in the process: the glibc malloc thresholds a run
/// sets once, and how an application keeps its own.
///
/// Why: a training step allocates and frees the same tensors at every batch (gradients, the
/// optimizer's temporaries, activations: a few hundred KB to a few MB each). glibc's malloc maps
/// allocations above its mmap threshold (128 KB at first, raised as it sees larger blocks freed)
/// in their own pages and unmaps them when freed, and gives a heap's free top back to the system
/// once it passes the trim threshold (twice the mmap threshold); the next step faults every page
/// in again. Measured on 2 cores, Fashion-MNIST's MLP at batch 128: 510 page faults per batch,
/// and 27k items/s against 50k with the thresholds below. The step is the same in a hand-written
/// loop; the fix is process-wide, which is why a run sets it once and an application can refuse.

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <string_view>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace batchpipe {

/// @brief The thresholds a run gives glibc's malloc (see keep_freed_memory).
struct MallocThresholds {
  /// Blocks from this size up are mapped on their own and given back when freed; smaller ones
  /// come from malloc's heaps and are reused. 32 MiB is the largest value glibc accepts on 64-bit
  /// systems (and its own ceiling for the threshold it adjusts by itself).
  static constexpr std::size_t mmap_threshold = std::size_t{32} << 20;
  /// Free memory at the top of a heap that malloc keeps before giving it back to the system.
  static constexpr std::size_t trim_threshold = std::size_t{256} << 20;
};

namespace detail {

/// Whether the environment already sets malloc's mmap or trim threshold (GLIBC_TUNABLES, or
/// glibc's older MALLOC_*_ variables): the application chose, and a run leaves malloc alone.
inline bool environment_sets_malloc_thresholds(const char* tunables, const char* mmap_variable,
                                               const char* trim_variable) {
  const std::string_view listed = tunables ? tunables : "";
  return mmap_variable || trim_variable ||
         listed.find("glibc.malloc.mmap_threshold") != std::string_view::npos ||
         listed.find("glibc.malloc.trim_threshold") != std::string_view::npos;
}

struct MallocTuning {
  std::atomic<bool> wanted{true};
  std::atomic<bool> applied{false};
  std::once_flag once;

  static MallocTuning& process() {
    static MallocTuning tuning;
    return tuning;
  }
};

/// Sets MallocThresholds in glibc's malloc, once per process, unless the application refused
/// (keep_freed_memory(false)) or set them in the environment. Called when a run starts.
inline void keep_freed_memory_in_process() {
  auto& tuning = MallocTuning::process();
  if (!tuning.wanted.load()) return;
  std::call_once(tuning.once, [&] {
#if defined(__GLIBC__)
    if (!environment_sets_malloc_thresholds(std::getenv("GLIBC_TUNABLES"),
                                            std::getenv("MALLOC_MMAP_THRESHOLD_"),
                                            std::getenv("MALLOC_TRIM_THRESHOLD_"))) {
      // Both: setting either one turns off glibc's own adjustment of the other.
      mallopt(M_MMAP_THRESHOLD, static_cast<int>(MallocThresholds::mmap_threshold));
      mallopt(M_TRIM_THRESHOLD, static_cast<int>(MallocThresholds::trim_threshold));
    }
#endif
    tuning.applied.store(true);
  });
}

/// Whether keep_freed_memory_in_process has run its course (set the thresholds, or found the
/// environment setting them).
inline bool freed_memory_settled() { return MallocTuning::process().applied.load(); }

}  // namespace detail

/// @brief Whether runs keep the memory freed between batches in the process (the default) or
/// leave glibc's malloc as the application set it.
///
/// By default the first run of the process (when its first batch is asked for) sets glibc's
/// malloc thresholds to MallocThresholds, so that the tensors a training step frees are reused
/// by the next step instead of going back to the system and faulting in again: the process then
/// holds on to up to 256 MiB of freed memory in each malloc heap. Call `keep_freed_memory(false)`
/// before the first run to leave malloc alone (a process-wide choice that belongs to you: an
/// allocator of your own, a tight memory limit). Thresholds set in the environment
/// (`GLIBC_TUNABLES=glibc.malloc.trim_threshold=...:glibc.malloc.mmap_threshold=...`) are always
/// left as they are. Elsewhere than glibc this does nothing. Once set, the thresholds stay: a
/// later `keep_freed_memory(false)` only stops runs from setting them.
inline void keep_freed_memory(bool keep) { detail::MallocTuning::process().wanted.store(keep); }

}  // namespace batchpipe
