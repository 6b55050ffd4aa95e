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

/// The salts of the library's own streams, all in one place so that no two collide: a run's
/// seed gives batch n the stream n, and each salt below starts a family far from those numbers.
namespace stream_salt {
inline constexpr std::uint64_t torch_generator = 0x70C4;      // Random::torch_generator
inline constexpr std::uint64_t step_probability = 0xACE0000;  // + the step's place: its .p draw
inline constexpr std::uint64_t merge = 0x3E26E000;            // the batches a merge makes
inline constexpr std::uint64_t shard = 0x54A2D000;            // + the rank: a shard's draws
inline constexpr std::uint64_t rebatch = 0x5EBA7C00;          // + the step's place: a rebatch's batches
inline constexpr std::uint64_t join = 0x701E;                 // a joined batch's, from its batch's stream
}  // namespace stream_salt

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

  /// A copy continues from where `other` is, on its own: its LibTorch generator too is a copy,
  /// not a second handle to `other`'s (at::Generator copies share their state).
  Random(const Random& other) : seed_(other.seed_), state_(other.state_) {
    if (other.torch_generator_) torch_generator_ = other.torch_generator_->clone();
  }
  /// As the copy constructor.
  Random& operator=(const Random& other) {
    if (this != &other) *this = Random(other);
    return *this;
  }
  /// Takes over `other`'s stream.
  Random(Random&&) noexcept = default;
  /// Takes over `other`'s stream.
  Random& operator=(Random&&) noexcept = default;
  ~Random() = default;

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
      torch_generator_ =
          at::detail::createCPUGenerator(detail::derive_seed(seed_, detail::stream_salt::torch_generator));
    }
    return *torch_generator_;
  }

 private:
  // Modulo with rejection of the draws that would make low residues more likely: those below
  // 2^64 mod n, which is less than n, so a draw of at least n is accepted without computing it.
  // That saves a division per draw (shuffling a million items cost more than a batch of a no-op
  // pipeline) and keeps the draws of earlier versions: a seed shuffles as it did.
  std::uint64_t below_nonzero(std::uint64_t n) noexcept {
    for (;;) {
      const std::uint64_t draw = (*this)();
      if (draw >= n || draw >= (0 - n) % n) return draw % n;
    }
  }

  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

  std::uint64_t seed_;
  std::array<std::uint64_t, 4> state_{};
  std::optional<at::Generator> torch_generator_;
};

}  // namespace batchpipe
