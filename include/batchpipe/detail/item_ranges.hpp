#pragma once
// Splits a pass over a batch's items into ranges run in parallel on the current task arena (the
// run's), for the kernels that fill a batch's tensors: the dataset's row gather and the one-pass
// image kernels.
//
// Why: without prefetch the consumer makes each batch itself, with one LibTorch intra-op thread
// (OpenBLAS's pool has the budget; thread_budget.hpp), while the arena's other slots stay free.
// Split over the arena, the budget's cores share the work: W1 without prefetch on 2 cores went
// from 2.3-2.5 to 3.9-4.0 million items/s. (Between training steps it gains little: the worker
// sleeps through each step, and waking it takes about 25 us of a 40 us gather.) With prefetch, a
// worker's split may be picked up by the consumer or another worker while they would otherwise
// wait.
//
// Each range writes only its own items, so the result is the same however the items are split.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace batchpipe::detail {

/// Bytes written by one range at least: below that, waking a thread costs more than it saves.
inline constexpr std::size_t kMinBytesPerItemRange = std::size_t{64} << 10;

/// While the flag this points to is set, passes on this thread run on it alone. A batch task on
/// a worker points it at its run's "the consumer's steps hold the cores" flag (prefetcher.hpp):
/// a worker in the middle of a kernel when the steps begin finishes it without calling idle
/// threads to the arena, as TaskGate keeps the workers from starting anything new.
inline thread_local const std::atomic<bool>* item_ranges_held = nullptr;

/// Points item_ranges_held at `flag` on this thread for the object's lifetime (then puts back
/// what it was: runs nest).
class HoldItemRangesWhile {
 public:
  explicit HoldItemRangesWhile(const std::atomic<bool>* flag) : before_(item_ranges_held) {
    item_ranges_held = flag;
  }
  ~HoldItemRangesWhile() { item_ranges_held = before_; }
  HoldItemRangesWhile(const HoldItemRangesWhile&) = delete;
  HoldItemRangesWhile& operator=(const HoldItemRangesWhile&) = delete;

 private:
  const std::atomic<bool>* before_;
};

/// Calls `f(first, last)` on ranges that together cover the items [0, items) once each, in
/// parallel on the current arena when the pass writes `bytes` in all and there is room to split.
/// Isolated: a thread waiting for the other ranges runs only these ranges, never a whole batch
/// task of the arena (which would hold this batch up for as long as that one takes). In a
/// context of its own: a cancellation of the batch's task group (the task's, or an action's)
/// cannot skip ranges and leave the output partly unwritten. `f` must not throw.
template <class F>
void for_item_ranges(int64_t items, std::size_t bytes, const F& f) {
  const auto ranges = static_cast<int64_t>(
      std::min<std::size_t>(static_cast<std::size_t>(std::max(1, tbb::this_task_arena::max_concurrency())),
                            bytes / kMinBytesPerItemRange));
  const bool held = item_ranges_held && item_ranges_held->load(std::memory_order_acquire);
  if (ranges < 2 || items < 2 || held) {
    f(int64_t{0}, items);
    return;
  }
  // Rounded up, so that the partitioner stops at `ranges` ranges rather than splitting one more.
  const int64_t grain = (items + ranges - 1) / ranges;
  tbb::task_group_context own_context(tbb::task_group_context::isolated);
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, items, grain),
        [&](const tbb::blocked_range<int64_t>& range) { f(range.begin(), range.end()); },
        tbb::simple_partitioner{}, own_context);
  });
}

/// How many rows ahead gather_rows asks for the memory of the row it will copy: rows drawn at
/// random from a dataset larger than the caches come from main memory, and one row at a time
/// each copy waits out the latency before the next starts. Asked for 8 rows ahead, a gather of
/// 256 Fashion-MNIST rows (784 bytes) after a training step evicted the caches took 9-10 us on one
/// core instead of 23-24.
inline constexpr int64_t kRowsFetchedAhead = 8;

/// Hints the CPU to bring the first bytes of [p, p + bytes) (1 KiB at most: the hardware's own
/// prefetcher follows a longer row once its start is read) into the cache; no effect on results.
inline void prefetch_start_of(const unsigned char* p, std::size_t bytes) {
#if defined(__GNUC__) || defined(__clang__)
  constexpr std::uintptr_t kCacheLine = 64, kMostBytes = 1024;
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  const auto end = start + std::min<std::uintptr_t>(bytes, kMostBytes);
  for (std::uintptr_t line = start & ~(kCacheLine - 1); line < end; line += kCacheLine)
    __builtin_prefetch(reinterpret_cast<const void*>(line));
#else
  (void)p;
  (void)bytes;
#endif
}

/// The rows `rows` of `data` (rows along the first dimension), as index_select(0, rows) gives
/// them: copied row by row on the arena (for_item_ranges) where `data` is a contiguous CPU tensor
/// of a plain dtype that needs no gradient and every row exists; by index_select otherwise (other
/// devices and layouts, autograd, and the error for a row that does not exist).
inline at::Tensor gather_rows(const at::Tensor& data, std::span<const int64_t> rows) {
  const auto count = static_cast<int64_t>(rows.size());
  const bool plain = data.device().is_cpu() && data.layout() == at::kStrided && data.dim() >= 1 &&
                     data.is_contiguous() && !data.is_quantized() && !data.is_conj() && !data.is_neg() &&
                     !data.requires_grad();
  const auto row_exists = [&](int64_t row) { return row >= 0 && row < data.size(0); };
  if (!plain || !std::all_of(rows.begin(), rows.end(), row_exists)) {
    const at::Tensor positions = at::empty({count}, at::kLong);
    std::copy(rows.begin(), rows.end(), positions.data_ptr<int64_t>());
    return data.index_select(0, positions.to(data.device()));
  }
  auto shape = data.sizes().vec();
  shape[0] = count;
  at::Tensor out = at::empty(shape, data.options());
  const auto row_bytes = static_cast<std::size_t>(data.numel() / std::max<int64_t>(1, data.size(0))) *
                         static_cast<std::size_t>(data.element_size());
  if (row_bytes == 0) return out;
  const auto* from = static_cast<const unsigned char*>(data.data_ptr());
  auto* to = static_cast<unsigned char*>(out.data_ptr());
  const auto source = [&](int64_t i) {
    return from + static_cast<std::size_t>(rows[static_cast<std::size_t>(i)]) * row_bytes;
  };
  for_item_ranges(count, row_bytes * rows.size(), [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < std::min(first + kRowsFetchedAhead, last); ++i)
      prefetch_start_of(source(i), row_bytes);
    for (int64_t i = first; i < last; ++i) {
      if (i + kRowsFetchedAhead < last) prefetch_start_of(source(i + kRowsFetchedAhead), row_bytes);
      std::memcpy(to + static_cast<std::size_t>(i) * row_bytes, source(i), row_bytes);
    }
  });
  return out;
}

}  // namespace batchpipe::detail
