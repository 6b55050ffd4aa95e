#pragma once
// Memory for the tensors that the one-pass image kernels make, kept and reused from batch to
// batch instead of going back to the system.
//
// Why: a batch made on a worker and dropped on the consumer frees its tensors into the worker's
// malloc arena, and glibc gives an arena's free top back to the system (madvise) once it passes
// its trim threshold; the next batch then faults every page in again. W2 with prefetch took 50
// to 220 page faults per batch that way (a few per batch without prefetch, where one thread both
// makes and frees). Buffers of the pool keep their pages: a batch of the same shape reuses them.
//
// What it keeps: buffers of the exact byte sizes asked for, at most kMaxCachedBytes in all, so a
// process holds at most that much after its runs end; a buffer larger than a quarter of that is
// never kept (it would crowd out the others, and its allocation dwarfs a fault per page anyway).

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace batchpipe::detail {

class BufferPool {
 public:
  static constexpr std::size_t kMaxCachedBytes = std::size_t{64} << 20;
  static constexpr std::size_t kMaxPooledBuffer = kMaxCachedBytes / 4;
  static constexpr std::size_t kAlignment = 64;  // as LibTorch's CPU allocator aligns

  /// The process's pool. Never destroyed (a run still prefetching during static destruction
  /// may ask it for memory); the buffers kept in it are freed with the process.
  static const std::shared_ptr<BufferPool>& shared() {
    static const auto* pool = new std::shared_ptr<BufferPool>(std::make_shared<BufferPool>());
    return *pool;
  }

  /// An uninitialized contiguous CPU tensor of a plain dtype, like at::empty(sizes, options),
  /// its memory from the pool. Its storage cannot grow (resize_ to more elements throws), as for
  /// any tensor made over memory LibTorch does not own; the kernels' outputs never need to.
  /// Anything else (quantized dtypes, pinned memory, gradients, other devices) is at::empty's.
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const std::size_t bytes = byte_size(sizes, options);
    const bool plain = options.device().type() == at::kCPU && options.layout() == at::kStrided &&
                       !options.pinned_memory() && !options.requires_grad() &&
                       !at::isQIntType(at::typeMetaToScalarType(options.dtype()));
    if (!plain || bytes == 0 || bytes > kMaxPooledBuffer) return at::empty(sizes, options);
    std::shared_ptr<BufferPool> pool = shared();
    void* data = pool->take(bytes);
    return at::from_blob(
        data, sizes, [pool = std::move(pool), bytes](void* p) { pool->give_back(p, bytes); }, options);
  }

  /// Bytes kept for reuse now (for tests and diagnostics).
  std::size_t cached_bytes() const {
    std::scoped_lock lock(mutex_);
    return cached_bytes_;
  }

  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool() {
    for (auto& [bytes, buffers] : free_)
      for (void* p : buffers) std::free(p);
  }

 private:
  static std::size_t byte_size(at::IntArrayRef sizes, const at::TensorOptions& options) {
    std::size_t n = options.dtype().itemsize();
    for (const int64_t size : sizes) n *= static_cast<std::size_t>(size);
    return n;
  }

  void* take(std::size_t bytes) {
    {
      std::scoped_lock lock(mutex_);
      auto found = free_.find(bytes);
      if (found != free_.end() && !found->second.empty()) {
        void* p = found->second.back();
        found->second.pop_back();
        cached_bytes_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    if (!p) throw std::bad_alloc();
    return p;
  }

  void give_back(void* p, std::size_t bytes) noexcept {
    try {
      std::scoped_lock lock(mutex_);
      if (fits_after_room_made(bytes)) {
        free_[bytes].push_back(p);
        cached_bytes_ += bytes;
        return;
      }
    } catch (...) {  // no room to note it: the buffer goes back to the system
    }
    std::free(p);
  }

  // Whether a buffer of `bytes` may be kept: it fits, or it fits once kept buffers of other
  // sizes are freed (which happens then): the shapes a process uses now matter, not those of a
  // run that has ended. Buffers of its own size are never freed for it.
  bool fits_after_room_made(std::size_t bytes) {
    const auto same = free_.find(bytes);
    const std::size_t same_bytes = same == free_.end() ? 0 : same->second.size() * bytes;
    if (same_bytes + bytes > kMaxCachedBytes) return false;
    for (auto it = free_.begin(); it != free_.end() && cached_bytes_ + bytes > kMaxCachedBytes;) {
      auto& [size, buffers] = *it;
      while (size != bytes && !buffers.empty() && cached_bytes_ + bytes > kMaxCachedBytes) {
        std::free(buffers.back());
        buffers.pop_back();
        cached_bytes_ -= size;
      }
      it = buffers.empty() ? free_.erase(it) : std::next(it);
    }
    return true;
  }

  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;  // by byte size
  std::size_t cached_bytes_ = 0;
};

}  // namespace batchpipe::detail
