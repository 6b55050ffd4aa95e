#pragma once
/// @file random.hpp
/// @brief Random: a small, splittable random stream; each batch gets its own.

#include <batchpipe/core/error.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace batchpipe {

namespace detail {

/// SplitMix64's finalizer: a bijective 64-bit mixer, good enough to derive unrelated seeds.
constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// A seed for stream `stream` of the family `seed`: batch n of a run, item i of a batch, ...
constexpr std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) noexcept {
  return splitmix64(seed ^ splitmix64(stream ^ 0xD1B54A32D192ED03ULL));
}

/// The high and low 64 bits of the 128-bit product a * b, from 32-bit halves (for compilers
/// without a 128-bit integer).
constexpr std::pair<std::uint64_t, std::uint64_t> multiply_wide_portable(std::uint64_t a,
                                                                         std::uint64_t b) noexcept {
  const std::uint64_t a_lo = a & 0xFFFFFFFF, a_hi = a >> 32, b_lo = b & 0xFFFFFFFF, b_hi = b >> 32;
  const std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const std::uint64_t middle = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFF) + lo_hi;
  return {hi_hi + (hi_lo >> 32) + (middle >> 32), (middle << 32) | (lo_lo & 0xFFFFFFFF)};
}

/// The high and low 64 bits of the 128-bit product a * b.
constexpr std::pair<std::uint64_t, std::uint64_t> multiply_wide(std::uint64_t a, std::uint64_t b) noexcept {
#if defined(__SIZEOF_INT128__)
  __extension__ using u128 = unsigned __int128;
  const u128 product = static_cast<u128>(a) * b;
  return {static_cast<std::uint64_t>(product >> 64), static_cast<std::uint64_t>(product)};
#else
  return multiply_wide_portable(a, b);
#endif
}

}  // namespace detail

/// @brief A random stream (xoshiro256**), seeded by one 64-bit number and cheap to split.
///
/// It is a UniformRandomBitGenerator, so the standard distributions accept it. Its own helpers
/// (`uniform`, `below`, `bernoulli`, `shuffle`) are defined here rather than taken from the
/// standard library, whose distributions differ between implementations: with a seed, results
/// are the same on every platform.
///
/// @code
/// ACTION(jitter)() {
///   auto& rng = random();                          // this batch's stream
///   if (rng.bernoulli(0.5)) { ... }
///   auto noise = at::randn({8}, rng.torch_generator());
/// }
/// @endcode
class Random {
 public:
  /// The type of a raw draw: 64 random bits.
  using result_type = std::uint64_t;

  /// A stream seeded with `seed`: the same seed gives the same draws.
  explicit Random(std::uint64_t seed = 0) noexcept : seed_(seed) {
    std::uint64_t s = seed;
    for (auto& word : state_) word = s = detail::splitmix64(s);
  }

  /// The seed this stream started from.
  std::uint64_t seed() const noexcept { return seed_; }

  /// An independent stream derived from this one's seed and `stream` (an item's number, say).
  /// It does not depend on how much of this stream was consumed.
  Random split(std::uint64_t stream) const noexcept { return Random(detail::derive_seed(seed_, stream)); }

  /// The smallest raw draw, 0.
  static constexpr result_type min() noexcept { return 0; }
  /// The largest raw draw, 2^64 - 1.
  static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

  /// The next raw draw: 64 uniformly random bits.
  result_type operator()() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// A double uniform in [0, 1).
  double uniform() noexcept { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }

  /// True with probability p.
  bool bernoulli(double p) noexcept { return uniform() < p; }

  /// An integer uniform in [0, n), without modulo bias; an Error for n = 0 (an empty range).
  std::uint64_t below(std::uint64_t n) {
    if (n == 0) throw Error("Random::below(0): there is no integer in the empty range [0, 0)");
    return below_nonzero(n);
  }

  /// Shuffles a random-access range in place (Fisher-Yates).
  template <class Range>
  void shuffle(Range& range) noexcept {
    using std::swap;
    for (std::size_t i = std::size(range); i > 1; --i) swap(range[i - 1], range[below_nonzero(i)]);
  }

  /// A LibTorch CPU generator seeded from this stream's seed, for tensor random functions
  /// (`at::rand(shape, gen)`). Created on first use and kept, so consecutive calls continue
  /// one sequence. Draw on the CPU, then move the result to the device you need.
  at::Generator& torch_generator() {
    if (!torch_generator_) {
      torch_generator_ = at::detail::createCPUGenerator(detail::derive_seed(seed_, 0x70C4));
    }
    return *torch_generator_;
  }

 private:
  // Lemire's method: the high half of draw * n is uniform in [0, n) once the draws whose low half
  // falls below 2^64 mod n are rejected; that remainder is computed (one division) only when the
  // low half is small enough for a rejection to be possible, which is rare. A division per draw
  // made shuffling a million items cost more than a batch of a no-op pipeline.
  std::uint64_t below_nonzero(std::uint64_t n) noexcept {
    auto [high, low] = detail::multiply_wide((*this)(), n);
    if (low < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (low < threshold) std::tie(high, low) = detail::multiply_wide((*this)(), n);
    }
    return high;
  }

  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

  std::uint64_t seed_;
  std::array<std::uint64_t, 4> state_{};
  std::optional<at::Generator> torch_generator_;
};

}  // namespace batchpipe
