#pragma once
/// @file distributed.hpp
/// @brief Data-parallel training over LibTorch's own distributed engine (c10d with Gloo):
/// a process's place in a job (bp::Distributed), its shard of a run, parameters broadcast from
/// rank 0, gradients averaged over the ranks, metrics summed for reporting.
///
/// Not part of the umbrella header: include `<batchpipe/distributed.hpp>`. It needs LibTorch's
/// c10d headers and Gloo's (Debian: libgloo-dev).

// LibTorch's Gloo process group is declared only under this macro; the libraries Debian and
// PyTorch ship are built with it.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif

#include <batchpipe/core/error.hpp>
#include <batchpipe/core/run_options.hpp>
#include <batchpipe/core/variables.hpp>
#include <batchpipe/training/training.hpp>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace batchpipe {

/// @brief Where a process stands in a distributed job and how it finds the others.
///
/// from_environment() reads the variables PyTorch's launchers set: `RANK`, `WORLD_SIZE`,
/// `MASTER_ADDR`, `MASTER_PORT`, and optionally `LOCAL_RANK`, `LOCAL_WORLD_SIZE` (default: all
/// ranks on this machine), `GLOO_SOCKET_IFNAME` and `BATCHPIPE_DIST_TIMEOUT` (seconds, 1 to 604800).
struct DistributedOptions {
  std::size_t rank = 0;                   ///< this process, 0 .. world_size - 1; rank 0 hosts the rendezvous
  std::size_t world_size = 1;             ///< processes in the job; 1 needs no rendezvous
  std::size_t local_rank = 0;             ///< this process among those of its machine
  std::size_t local_world_size = 1;       ///< the job's processes on this machine
  std::string master_addr = "127.0.0.1";  ///< rank 0's address, where the others meet
  std::uint16_t master_port = 29500;      ///< rank 0's port
  /// The network interface Gloo talks over (e.g. "eth0"); empty: the one the machine's host name
  /// resolves to, or loopback when master_addr is a loopback address.
  std::string interface = {};
  /// How long the rendezvous waits for every rank, and any collective for the slowest one (a
  /// rank writing a checkpoint in on_main keeps the others waiting that long at most).
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
  /// The largest flat buffer of gradients one allreduce carries (LibTorch's
  /// DistributedDataParallel's default).
  std::size_t bucket_bytes = std::size_t{25} << 20;

  /// The options the environment gives; an Error naming the variable when one is malformed or
  /// when RANK is set without WORLD_SIZE.
  static DistributedOptions from_environment();
};

namespace detail {

/// The value of an unsigned environment variable, or nothing when it is unset.
inline std::optional<std::size_t> environment_number(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (*end != '\0' || errno != 0 || text[0] == '-') {
    throw Error(std::string("environment variable ") + name + "='" + text + "' is not a whole number");
  }
  return static_cast<std::size_t>(value);
}

/// Whether an address is this machine's loopback (the address a local job meets at).
inline bool is_loopback(const std::string& address) {
  return address == "localhost" || address == "::1" || address.rfind("127.", 0) == 0;
}

/// Sets TCPStoreOptions::useLibUV off where it exists (LibTorch 2.x): the plain socket server
/// works in every build, the libuv one only where LibTorch was built with libuv.
template <class StoreOptions>
void prefer_plain_sockets(StoreOptions& options) {
  if constexpr (requires { options.useLibUV; }) options.useLibUV = false;
}

}  // namespace detail

inline DistributedOptions DistributedOptions::from_environment() {
  DistributedOptions options;
  const auto rank = detail::environment_number("RANK");
  const auto world = detail::environment_number("WORLD_SIZE");
  if (rank && !world) throw Error("environment variable RANK is set but WORLD_SIZE is not");
  if (!rank && world && *world > 1) throw Error("environment variable WORLD_SIZE is set but RANK is not");
  options.rank = rank.value_or(0);
  options.world_size = world.value_or(1);
  options.local_rank = detail::environment_number("LOCAL_RANK").value_or(options.rank);
  options.local_world_size = detail::environment_number("LOCAL_WORLD_SIZE").value_or(options.world_size);
  if (const char* address = std::getenv("MASTER_ADDR"); address && *address) options.master_addr = address;
  if (const auto port = detail::environment_number("MASTER_PORT")) {
    if (*port == 0 || *port > 65535)
      throw Error("environment variable MASTER_PORT=" + std::to_string(*port) + " is not a port");
    options.master_port = static_cast<std::uint16_t>(*port);
  }
  if (const char* name = std::getenv("GLOO_SOCKET_IFNAME"); name && *name) options.interface = name;
  if (const auto seconds = detail::environment_number("BATCHPIPE_DIST_TIMEOUT")) {
    if (*seconds == 0 || *seconds > 604800) {
      throw Error("environment variable BATCHPIPE_DIST_TIMEOUT=" + std::to_string(*seconds) +
                  " is not between 1 and 604800 seconds");
    }
    options.timeout = std::chrono::seconds(*seconds);
  }
  return options;
}

namespace detail {

/// A collective that failed (a rank gone, the timeout passed), with c10d's message; Distributed
/// turns it into an Error naming the collective and the rank. The job is broken by then.
struct CollectiveFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The message of an exception in flight (an exception_ptr), for errors that quote it: without
/// LibTorch's C++ stack trace (error_message, the one way every layer quotes an exception).
inline std::string message_of(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    return error_message(e);
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

/// "rank 2" or "ranks 0, 2", for messages.
inline std::string ranks_text(const std::vector<std::size_t>& ranks) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (std::size_t i = 0; i < ranks.size(); ++i) text += (i ? ", " : "") + std::to_string(ranks[i]);
  return text;
}

/// The type a tensor of `type` travels as in a broadcast: LibTorch 1.13's Gloo moves float,
/// double, half, int8, uint8, int32 and int64 only. The others go as a wider type that holds
/// every value exactly (a bfloat16 is a float with fewer bits); nothing for those it cannot move.
inline std::optional<at::ScalarType> broadcast_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
    case at::kDouble:
    case at::kHalf:
    case at::kChar:
    case at::kByte:
    case at::kInt:
    case at::kLong:
      return type;
    case at::kBFloat16:
      return at::kFloat;
    case at::kBool:
      return at::kByte;
    case at::kShort:
      return at::kInt;
    default:
      return std::nullopt;
  }
}

/// The type of the bucket a gradient of `type` is summed in: its own where Gloo sums it (float,
/// double, half), float for bfloat16 (which LibTorch 1.13's Gloo cannot sum; float holds every
/// bfloat16 and sums it more precisely); nothing for the others (complex, integers).
inline std::optional<at::ScalarType> bucket_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
    case at::kDouble:
    case at::kHalf:
      return type;
    case at::kBFloat16:
      return at::kFloat;
    default:
      return std::nullopt;
  }
}

/// Why the gradients of these parameters cannot be averaged (empty: they can). It depends on the
/// parameters alone, so ranks with the same model find the same answer before any collective.
inline std::string gradient_problem(const std::vector<at::Tensor>& parameters) {
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const at::Tensor& parameter = parameters[i];
    if (parameter.layout() != at::kStrided)
      return "parameter " + std::to_string(i) + " is sparse: only dense parameters' gradients are averaged";
    if (!bucket_type(parameter.scalar_type())) {
      return "parameter " + std::to_string(i) + " is of type " +
             std::string(c10::toString(parameter.scalar_type())) +
             ": only float, double, half and bfloat16 gradients are averaged";
    }
  }
  return {};
}

/// A 64-bit digest of a sequence of numbers (FNV-1a), to tell whether the ranks agree on a
/// layout with one small collective instead of one per tensor.
class Fingerprint {
 public:
  Fingerprint& add(std::uint64_t value) {
    for (int byte = 0; byte < 8; ++byte) {
      hash_ ^= (value >> (8 * byte)) & 0xFF;
      hash_ *= 1099511628211ULL;
    }
    return *this;
  }
  Fingerprint& add(const at::Tensor& tensor) {
    add(static_cast<std::uint64_t>(tensor.scalar_type())).add(static_cast<std::uint64_t>(tensor.dim()));
    for (const auto size : tensor.sizes()) add(static_cast<std::uint64_t>(size));
    return *this;
  }
  /// Non-negative, so that it travels in an int64 unchanged.
  std::int64_t value() const noexcept { return static_cast<std::int64_t>(hash_ >> 2); }

 private:
  std::uint64_t hash_ = 14695981039346656037ULL;
};

/// A table of a few whole numbers per rank, every row zero but this rank's: summed over the
/// ranks (one allreduce), every rank holds every rank's row.
inline at::Tensor own_row(std::size_t rank, std::size_t world, const std::vector<std::int64_t>& row) {
  at::Tensor table =
      at::zeros({static_cast<std::int64_t>(world), static_cast<std::int64_t>(row.size())}, at::kLong);
  auto cells = table.accessor<std::int64_t, 2>();
  for (std::size_t i = 0; i < row.size(); ++i)
    cells[static_cast<std::int64_t>(rank)][static_cast<std::int64_t>(i)] = row[i];
  return table;
}

/// The row of the step table (GradientBuckets) of a rank that cannot take part in a step: it
/// failed before its backward pass, or cannot average its module's gradients.
inline std::vector<std::int64_t> failed_step_row() { return {0, 0, 1}; }

/// Whether a job is broken (its ranks no longer agree on what comes next), and why: shared by
/// the job's copies and its gradient buckets.
class BrokenJob {
 public:
  /// Marks the job broken; the first reason is the one kept.
  void mark(const std::string& why) {
    std::scoped_lock lock(mutex_);
    if (!broken_) why_ = why;
    broken_ = true;
  }
  bool broken() const noexcept { return broken_; }
  /// What broke it ("an earlier failed collective").
  std::string why() const {
    std::scoped_lock lock(mutex_);
    return why_;
  }

 private:
  std::atomic<bool> broken_{false};
  mutable std::mutex mutex_;
  std::string why_;
};

/// The gradients of one module's parameters, averaged over the ranks in buckets: flat buffers
/// kept from step to step, each sent (an asynchronous allreduce) as soon as its gradients are
/// in. During a data-parallel backward pass (begin, then the backward, then finish) a hook on
/// each parameter hands over its gradient as autograd computes it, so the first buckets travel
/// while the backward pass goes on; average_gradients hands over finished gradients instead.
///
/// Every step makes the same collectives on every rank, in the same order, whatever fails:
/// - begin() starts the *step table*: each rank's item count, the fingerprint of its buckets'
///   layout and whether it failed before its backward pass (Distributed::fail_step). Before the
///   first bucket goes out, every rank reads the same table: when a rank failed or the layouts
///   differ, no rank sends a bucket and every rank's step throws. Otherwise each rank scales its
///   gradients by its share of the step's items (items / total, worked out in double from
///   int64 counts: exact for any count) before the sum, so the sum is the weighted average.
/// - The buckets hold the parameters in reverse order (the order a backward pass reaches them)
///   and go out strictly in bucket order. A gradient that cannot be handed over (a sparse one),
///   or a backward pass that throws, leaves its slots zero and the step goes on to the end; the
///   last bucket carries a flag per rank, so that every rank learns that the step failed and
///   throws instead of writing gradients.
/// - finish() waits for every collective it started before it returns or throws: no allreduce
///   still writes into a bucket when the next step fills it.
/// What cannot be made consistent breaks the job (broken_): a collective that failed, one that
/// could not be started, a failure this rank learns of after its last bucket went out.
class GradientBuckets : public std::enable_shared_from_this<GradientBuckets> {
 public:
  /// The parameters must pass gradient_problem().
  GradientBuckets(std::vector<at::Tensor> parameters, c10::intrusive_ptr<c10d::ProcessGroupGloo> group,
                  std::size_t bucket_bytes, std::shared_ptr<BrokenJob> broken)
      : parameters_(std::move(parameters)),
        group_(std::move(group)),
        rank_(static_cast<std::size_t>(group_->getRank())),
        world_(static_cast<std::size_t>(group_->getSize())),
        broken_(std::move(broken)),
        slot_of_(parameters_.size()) {
    Fingerprint layout;
    for (std::size_t i = parameters_.size(); i-- > 0;) {
      const at::Tensor& parameter = parameters_[i];
      const at::ScalarType type = *bucket_type(parameter.scalar_type());
      const auto bytes = static_cast<std::size_t>(parameter.numel()) * c10::elementSize(type);
      if (buckets_.empty() || buckets_.back().type != type || buckets_.back().bytes + bytes > bucket_bytes) {
        buckets_.emplace_back();
        buckets_.back().type = type;
      }
      Bucket& bucket = buckets_.back();
      slot_of_[i] = {buckets_.size() - 1, bucket.elements};
      bucket.parameters.push_back(i);
      bucket.elements += parameter.numel();
      bucket.bytes += bytes;
      layout.add(parameter);
    }
    for (auto& bucket : buckets_) {
      const bool last = &bucket == &buckets_.back();
      bucket.flat = at::zeros({bucket.elements + (last ? static_cast<std::int64_t>(world_) : 0)},
                              at::TensorOptions().dtype(bucket.type));
      layout.add(static_cast<std::uint64_t>(bucket.type))
          .add(static_cast<std::uint64_t>(bucket.flat.numel()));
    }
    signature_ = layout.add(buckets_.size()).value();
  }

  /// Puts a hook on every parameter that hands its gradient over during a step (and does
  /// nothing outside one). The hooks hold the buckets weakly: they never keep them alive.
  void attach() {
    const std::weak_ptr<GradientBuckets> self = weak_from_this();
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      hooks_.push_back(parameters_[i].register_hook([self, i](const at::Tensor& grad) {
        if (auto buckets = self.lock()) buckets->hand_over(i, grad);
      }));
    }
  }

  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  /// Takes the hooks off (the module's parameters changed, or the job ends).
  ~GradientBuckets() {
    for (std::size_t i = 0; i < hooks_.size(); ++i) parameters_[i].remove_hook(hooks_[i]);
  }

  /// The parameters the buckets were made for, to tell whether a module still has them.
  const std::vector<at::Tensor>& parameters() const noexcept { return parameters_; }

  /// Starts a step of a rank with `items` items: no gradient is in yet; the step table starts.
  /// An Error, before any collective, when a step of these buckets is under way (a second
  /// thread): the caller breaks the job.
  void begin(std::size_t items) {
    std::scoped_lock lock(mutex_);
    if (in_step_) {
      throw Error(
          "distributed: a data-parallel step of this module began before the last one ended: "
          "train it from one thread (a singleton action); the job is broken (the ranks may no longer make "
          "the same collectives)");
    }
    next_to_send_ = 0;
    for (auto& bucket : buckets_) {
      bucket.missing = bucket.parameters.size();
      bucket.work.reset();
    }
    received_.assign(parameters_.size(), false);
    error_.clear();
    collective_failure_.clear();
    abort_.clear();
    flag_sent_ = false;
    settled_ = false;
    proceed_ = false;
    weight_ = 0;
    std::vector<std::int64_t> row{static_cast<std::int64_t>(items), signature_, 0};
    if (items > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())) {
      error_ = "a step of " + std::to_string(items) + " items is more than a count can hold";
      row = failed_step_row();
    }
    step_table_ = own_row(rank_, world_, row);
    try {
      std::vector<at::Tensor> tensors{step_table_};
      step_work_ = group_->allreduce(tensors);
    } catch (const std::exception& e) {
      step_work_.reset();
      collective_failure_ = error_message(e);
      settled_ = true;  // nothing will be sent
    }
    in_step_ = true;
  }

  /// A parameter's gradient for this step: copied into its bucket, which goes out once full
  /// (after those before it). From a hook, the gradient autograd is about to accumulate. Never
  /// throws (a hook's exception would end the backward pass half way): what goes wrong fails
  /// the step at finish(), on every rank.
  void hand_over(std::size_t parameter, const at::Tensor& grad) noexcept {
    std::scoped_lock lock(mutex_);
    if (!in_step_ || !grad.defined()) return;
    try {
      if (grad.layout() != at::kStrided) {
        fail("parameter " + std::to_string(parameter) +
             " has a sparse gradient, which is not averaged over the ranks (an embedding made with "
             "sparse = true: make it dense)");
        return;
      }
      const auto [b, offset] = slot_of_[parameter];
      Bucket& bucket = buckets_[b];
      at::NoGradGuard no_grad;
      at::Tensor slot = bucket.flat.narrow(0, offset, parameters_[parameter].numel());
      if (received_[parameter]) {  // a second backward pass in the step adds to the first
        if (bucket.work) {
          fail(
              "a parameter's gradient came after its bucket was sent: one backward pass per data-parallel "
              "step");
          return;
        }
        slot.add_(grad.reshape({-1}));
        return;
      }
      slot.copy_(grad.reshape({-1}));
      received_[parameter] = true;
      --bucket.missing;
      send_ready();
    } catch (const std::exception& e) {
      fail("the gradient of parameter " + std::to_string(parameter) +
           " could not be averaged: " + error_message(e));
    } catch (...) {
      fail("the gradient of parameter " + std::to_string(parameter) + " could not be averaged");
    }
  }

  /// Ends the step: sends what is left (a parameter without a gradient counts as zero), waits for
  /// every collective of the step, then writes the averages into the parameters' gradients or
  /// throws on every rank alike. `backward_failure`: this rank's backward pass threw it (it is
  /// rethrown here, after the other ranks learned of it). A collective's failure throws
  /// CollectiveFailure, with the job broken.
  void finish(const std::exception_ptr& backward_failure = nullptr) {
    std::unique_lock lock(mutex_);
    in_step_ = false;  // a late hook (another thread's backward) hands over nothing more
    if (backward_failure) fail("the backward pass failed: " + message_of(backward_failure));
    at::NoGradGuard no_grad;
    if (settle()) {
      for (std::size_t i = 0; i < parameters_.size(); ++i) {
        if (received_[i]) continue;
        const auto [b, offset] = slot_of_[i];
        buckets_[b].flat.narrow(0, offset, parameters_[i].numel()).zero_();
        received_[i] = true;
        --buckets_[b].missing;
      }
      send_ready();
    }
    // The other ranks learn of this rank's failure from the last bucket's flags: when it went out
    // before the failure came, they end the step without it and their parameters move on.
    const bool others_went_on =
        !error_.empty() && proceed_ && !buckets_.empty() && next_to_send_ == buckets_.size() && !flag_sent_;
    std::string collective_failure = collective_failure_;
    lock.unlock();

    // Every collective started is waited for, even after one fails: none may still use a buffer
    // when this returns (the next step fills the same buffers).
    for (auto& bucket : buckets_) {
      if (!bucket.work) continue;
      try {
        bucket.work->wait();
      } catch (const std::exception& e) {
        if (collective_failure.empty()) collective_failure = error_message(e);
      }
    }
    if (!collective_failure.empty()) {
      broken_->mark("an earlier failed collective");
      throw CollectiveFailure(collective_failure);
    }
    if (others_went_on) {
      broken_->mark("a step that failed on this rank after its last bucket was sent");
      throw Error("distributed: " + error_ +
                  ", after this rank's last bucket was sent: the other ranks' step went on without this "
                  "rank, so their parameters and this rank's may differ; the job is broken, start a new job");
    }
    if (backward_failure) std::rethrow_exception(backward_failure);
    if (!error_.empty()) throw Error("distributed: " + error_ + "; no gradient was averaged on any rank");
    if (!abort_.empty()) throw Error(abort_);
    if (buckets_.empty()) return;  // nothing trainable
    Bucket& last = buckets_.back();
    const at::Tensor flags =
        last.flat.narrow(0, last.elements, static_cast<std::int64_t>(world_)).to(at::kFloat);
    std::vector<std::size_t> failed;
    for (std::size_t r = 0; r < world_; ++r) {
      if (flags[static_cast<std::int64_t>(r)].item<float>() > 0.5F) failed.push_back(r);
    }
    if (!failed.empty()) {
      throw Error("distributed: the data-parallel step failed on " + ranks_text(failed) +
                  " during its backward pass (see that rank's error); no gradient was averaged, the "
                  "parameters' gradients are this rank's own");
    }
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      at::Tensor& parameter = parameters_[i];
      const auto [b, offset] = slot_of_[i];
      const at::Tensor average =
          buckets_[b].flat.narrow(0, offset, parameter.numel()).view(parameter.sizes());
      if (parameter.grad().defined()) {
        parameter.mutable_grad().copy_(average);
      } else {
        parameter.mutable_grad() = average.to(parameter.options(), /*non_blocking=*/false, /*copy=*/true);
      }
    }
  }

 private:
  struct Bucket {
    at::ScalarType type = at::kFloat;
    std::vector<std::size_t> parameters = {};
    std::int64_t elements = 0;  // of gradients; the last bucket has a flag per rank after them
    std::size_t bytes = 0;
    at::Tensor flat = {};
    std::size_t missing = 0;
    c10::intrusive_ptr<c10d::Work> work = {};
  };

  /// Records this rank's first failure in the step: its slots count as zero and the last bucket
  /// tells the others.
  void fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }

  /// Waits for the step table (once per step) and reads it as every rank does: whether the
  /// step goes on, and this rank's share of the items. False: no bucket goes out.
  bool settle() {
    if (settled_) return proceed_;
    settled_ = true;
    try {
      step_work_->wait();
    } catch (const std::exception& e) {
      collective_failure_ = error_message(e);
      return proceed_ = false;
    }
    const auto table = step_table_.accessor<std::int64_t, 2>();
    std::vector<std::size_t> failed, differ;
    std::uint64_t total = 0;
    bool overflow = false;
    for (std::size_t r = 0; r < world_; ++r) {
      const auto row = static_cast<std::int64_t>(r);
      if (table[row][2] != 0) failed.push_back(r);
      if (table[row][1] != table[0][1]) differ.push_back(r);
      overflow |= __builtin_add_overflow(total, static_cast<std::uint64_t>(table[row][0]), &total);
    }
    if (!failed.empty()) {
      abort_ = "distributed: the data-parallel step failed on " + ranks_text(failed) +
               " before its backward pass (see that rank's error); no gradient was averaged";
    } else if (!differ.empty()) {
      abort_ = "distributed: the ranks train different models: the trainable parameters of " +
               ranks_text(differ) +
               " are not rank 0's (their number, shapes or types; or DistributedOptions::bucket_bytes "
               "differs); no gradient was averaged";
    } else if (overflow) {
      abort_ = "distributed: the ranks' item counts add up to more than 2^64; no gradient was averaged";
    }
    if (!abort_.empty()) return proceed_ = false;
    weight_ = total > 0 ? static_cast<double>(table[static_cast<std::int64_t>(rank_)][0]) /
                              static_cast<double>(total)
                        : 0.0;
    return proceed_ = true;
  }

  /// Sends the full buckets that come next in order, scaled by the rank's share of the items.
  void send_ready() {
    if (!settle()) return;
    while (next_to_send_ < buckets_.size() && buckets_[next_to_send_].missing == 0) {
      Bucket& bucket = buckets_[next_to_send_];
      bucket.flat.narrow(0, 0, bucket.elements).mul_(weight_);
      if (&bucket == &buckets_.back()) {
        at::Tensor flags = bucket.flat.narrow(0, bucket.elements, static_cast<std::int64_t>(world_));
        flags.zero_();
        if (!error_.empty()) {
          flags[static_cast<std::int64_t>(rank_)].fill_(1);
          flag_sent_ = true;
        }
      }
      try {
        std::vector<at::Tensor> tensors{bucket.flat};
        bucket.work = group_->allreduce(tensors);
      } catch (const std::exception& e) {  // the others send it: the ranks no longer agree
        collective_failure_ = error_message(e);
        proceed_ = false;
        return;
      }
      ++next_to_send_;
    }
  }

  std::vector<at::Tensor> parameters_;
  std::vector<unsigned> hooks_;  // register_hook's handle of each parameter's hook
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  std::size_t rank_;
  std::size_t world_;
  std::shared_ptr<BrokenJob> broken_;                          // the job's
  std::vector<std::pair<std::size_t, std::int64_t>> slot_of_;  // bucket and offset of each parameter
  std::vector<Bucket> buckets_;
  std::int64_t signature_ = 0;  // fingerprint of the buckets' layout
  std::mutex mutex_;
  // The step under way.
  at::Tensor step_table_;  // each rank's items, layout fingerprint, failure before backward
  c10::intrusive_ptr<c10d::Work> step_work_;
  std::vector<bool> received_;
  std::size_t next_to_send_ = 0;
  bool in_step_ = false;
  bool settled_ = false;    // the step table has been read
  bool proceed_ = false;    // the buckets go out
  bool flag_sent_ = false;  // the last bucket told the others that this rank failed
  double weight_ = 0;       // this rank's items over the step's
  std::string error_;       // this rank's failure in the step
  std::string abort_;       // every rank's, from the step table
  std::string collective_failure_;
};

}  // namespace detail

/// @brief This process's membership of a data-parallel job: the c10d Gloo process group of
/// every rank, made at construction (the rendezvous), and the collectives training needs.
///
/// Every rank must call the collectives in the same order with the same shapes (as in any c10d
/// program); a rank that leaves or stalls makes the others' next collective fail with an Error
/// within `timeout`, never hang. A step that fails on one rank (a sparse gradient, a backward
/// pass or a forward pass that throws, models that differ) fails on every rank with an Error and
/// the job goes on; what leaves the ranks disagreeing breaks the job: every later collective
/// throws at once (a failed collective, a failure too late to tell the others). A world of
/// one process makes no group and every collective is the identity, so one program serves both.
///
/// @code
/// bp::Distributed job = bp::Distributed::from_environment();
/// training.run({.batch_size = 128, .shuffle = 42, .shard = job.shard()});
/// @endcode
class Distributed {
 public:
  /// Joins the job: rank 0 opens the rendezvous (a c10d TCPStore) at master_addr:master_port
  /// and every rank connects; then the Gloo group connects every pair. An Error naming the rank,
  /// the address and the time waited when that fails or times out.
  explicit Distributed(DistributedOptions options) : options_(std::move(options)) {
    if (options_.world_size == 0 || options_.rank >= options_.world_size) {
      throw Error("distributed: rank " + std::to_string(options_.rank) + " is not below the world size " +
                  std::to_string(options_.world_size));
    }
    if (options_.timeout <= std::chrono::milliseconds(0)) {
      throw Error("distributed: the timeout must be positive (a job without one could wait forever)");
    }
    if (options_.world_size > 1) connect();
  }

  /// A world of one process: no group, every collective the identity.
  Distributed() : Distributed(DistributedOptions{}) {}

  /// Joins the job the environment describes (DistributedOptions::from_environment).
  static Distributed from_environment() { return Distributed(DistributedOptions::from_environment()); }

  std::size_t rank() const noexcept { return options_.rank; }              ///< this process
  std::size_t world_size() const noexcept { return options_.world_size; }  ///< processes in the job
  std::size_t local_rank() const noexcept { return options_.local_rank; }  ///< among its machine's
  bool is_main() const noexcept { return options_.rank == 0; }             ///< rank 0
  const DistributedOptions& options() const noexcept { return options_; }  ///< how it was joined

  /// This rank's shard of a run (RunOptions::shard).
  Shard shard() const noexcept { return Shard{options_.rank, options_.world_size}; }

  /// A thread budget (RunOptions::threads) that shares this machine's cores among the job's
  /// processes on it, so that they do not each take every core.
  std::size_t threads_per_process() const {
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    return std::max<std::size_t>(1, cores / std::max<std::size_t>(1, options_.local_world_size));
  }

  /// LibTorch's process group, for collectives of one's own; null in a world of one.
  const c10::intrusive_ptr<c10d::ProcessGroupGloo>& process_group() const noexcept { return group_; }

  /// Copies rank 0's parameters and buffers into every rank's module. An Error on every rank,
  /// before anything is copied, when the ranks' modules differ (in their tensors' number, shapes
  /// or types) or hold a tensor of a type Gloo cannot send (complex).
  template <class Module>
  void broadcast_parameters(Module& module) const {
    if (!group_) return;
    require_intact();
    std::vector<at::Tensor> state = module->parameters();
    for (const auto& buffer : module->buffers()) state.push_back(buffer);
    // Broadcasts of unequal sizes would not match (Gloo ends the process): the ranks compare
    // their modules first, in one small collective, and fail alike.
    detail::Fingerprint layout;
    for (const auto& tensor : state) layout.add(tensor);
    layout.add(state.size());
    at::Tensor table = detail::own_row(options_.rank, options_.world_size, {layout.value()});
    run_collective("broadcast of the parameters", [&] {
      std::vector<at::Tensor> tensors{table};
      return group_->allreduce(tensors);
    });
    const auto rows = table.accessor<std::int64_t, 2>();
    std::vector<std::size_t> differ;
    for (std::size_t r = 0; r < options_.world_size; ++r) {
      if (rows[static_cast<std::int64_t>(r)][0] != rows[0][0]) differ.push_back(r);
    }
    if (!differ.empty()) {
      throw Error("distributed: broadcast_parameters: the modules of " + detail::ranks_text(differ) +
                  " are not rank 0's (their parameters and buffers differ in number, shapes or types); "
                  "nothing was copied");
    }
    for (std::size_t i = 0; i < state.size(); ++i) {  // the same on every rank: the layouts agree
      if (!detail::broadcast_type(state[i].scalar_type())) {
        throw Error("distributed: broadcast_parameters: tensor " + std::to_string(i) + " is of type " +
                    std::string(c10::toString(state[i].scalar_type())) +
                    ", which Gloo cannot send; nothing was copied");
      }
    }
    at::NoGradGuard no_grad;
    for_each_bucket(state, [&](std::vector<at::Tensor> bucket) {
      at::Tensor flat = flatten(bucket);
      run_collective("broadcast of the parameters", [&] {
        std::vector<at::Tensor> tensors{flat};
        return group_->broadcast(tensors);
      });
      unflatten(flat, bucket);
    });
  }

  /// Replaces every rank's gradients of `module` with their average over the ranks, each rank's
  /// weighted by `items` (the size of its batch), so that ranks with unequal batches (a shard's
  /// last) give the gradient of the whole step's batch. A parameter without a gradient counts as
  /// zero (a rank whose batch was empty). For a step of one's own after its backward pass;
  /// backward() overlaps the averaging with the backward pass instead.
  ///
  /// When the step fails on any rank (a sparse gradient, another rank's failure), every rank
  /// throws an Error and no gradient changes; the job goes on.
  template <class Module>
  void average_gradients(Module& module, std::size_t items) const {
    if (!group_) return;
    const auto buckets = begin_step(module, items);
    const auto& parameters = buckets->parameters();
    for (std::size_t i = parameters.size(); i-- > 0;) {
      const at::Tensor grad = parameters[i].grad();
      if (grad.defined()) buckets->hand_over(i, grad);
    }
    finish(*buckets, nullptr);
  }

  /// The backward pass of `loss` with the gradients of `module` averaged over the ranks as they
  /// come (weighted by `items`, as average_gradients): buckets of gradients travel while the
  /// backward pass goes on. A rank with an empty batch passes an undefined loss and items 0.
  /// One backward pass per step; the parameters' gradients must be zero or unset before it.
  ///
  /// When the step fails on any rank, every rank throws (the backward pass's own exception on
  /// the rank where it threw, an Error naming that rank on the others) and the gradients are not
  /// averaged; the job goes on.
  template <class Module>
  void backward(Module& module, const at::Tensor& loss, std::size_t items) const {
    if (!group_) {
      if (loss.defined()) loss.backward();
      return;
    }
    const auto buckets = begin_step(module, items);
    std::exception_ptr failure;
    if (loss.defined()) {
      try {
        loss.backward();
      } catch (...) {
        // The step goes on to its end with this rank's missing gradients as zeros, so that every
        // rank makes the same collectives; finish() tells the others and rethrows this.
        failure = std::current_exception();
      }
    }
    finish(*buckets, failure);
  }

  /// Takes part in a data-parallel step (backward or average_gradients) that failed on this
  /// rank before it: its forward pass or loss threw. The other ranks' step then throws an Error
  /// naming this rank, and every rank goes on to its next collective together. train_step calls
  /// it; a step of one's own calls it where its forward pass fails, then rethrows.
  void fail_step() const {
    if (!group_) return;
    require_intact();
    at::Tensor table = detail::own_row(options_.rank, options_.world_size, detail::failed_step_row());
    run_collective("allreduce of the gradients", [&] {
      std::vector<at::Tensor> tensors{table};
      return group_->allreduce(tensors);
    });
  }

  /// The sum over the ranks of each value.
  std::vector<double> sum(std::vector<double> values) const {
    return reduce(std::move(values), c10d::ReduceOp::SUM, "sum of values");
  }
  /// The largest over the ranks of each value (the slowest rank's time).
  std::vector<double> max(std::vector<double> values) const {
    return reduce(std::move(values), c10d::ReduceOp::MAX, "maximum of values");
  }
  /// The largest over the ranks.
  double max(double value) const { return max(std::vector<double>{value})[0]; }
  /// The sum over the ranks.
  double sum(double value) const { return sum(std::vector<double>{value})[0]; }
  /// The mean over the ranks of each value.
  std::vector<double> mean(std::vector<double> values) const {
    values = sum(std::move(values));
    for (auto& value : values) value /= static_cast<double>(world_size());
    return values;
  }
  /// The mean over the ranks.
  double mean(double value) const { return mean(std::vector<double>{value})[0]; }
  /// The counts of every rank together (an evaluation's accuracy over the whole dataset).
  Accuracy sum(const Accuracy& accuracy) const {
    const auto both =
        sum(std::vector<double>{static_cast<double>(accuracy.correct), static_cast<double>(accuracy.total)});
    return Accuracy{static_cast<std::int64_t>(both[0]), static_cast<std::int64_t>(both[1])};
  }

  /// The mean over the ranks of numeric pipeline variables (Variables::number: numbers, an
  /// Accuracy's share, a vector's last element), in the order of `names`: every rank's loss in
  /// one report. An Error names a variable that is missing or not a number.
  /// A variable that is not a number on one rank is an Error on every rank (each sends, with
  /// its values, which of them it lacks).
  std::vector<double> mean(const Variables& variables, const std::vector<std::string>& names) const {
    std::vector<double> values(2 * names.size(), 0.0);  // the values, then 1 for each one missing
    for (std::size_t i = 0; i < names.size(); ++i) {
      std::optional<double> value;
      try {
        value = variables.number(names[i]);
      } catch (const std::exception&) {}
      values[i] = value.value_or(0.0);
      values[names.size() + i] = value ? 0.0 : 1.0;
    }
    values = sum(std::move(values));
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (values[names.size() + i] > 0) {
        throw Error("distributed: pipeline variable '" + names[i] +
                    "' is not a number to average over the ranks (on " +
                    std::to_string(static_cast<std::size_t>(values[names.size() + i])) + " of " +
                    std::to_string(world_size()) + " ranks)");
      }
    }
    values.resize(names.size());
    for (auto& value : values) value /= static_cast<double>(world_size());
    return values;
  }

  /// Waits until every rank gets here.
  void barrier() const {
    if (!group_) return;
    require_intact();
    run_collective("barrier", [&] { return group_->barrier(); });
  }

  /// Runs `work` on rank 0 only (writing a checkpoint, printing a report), then lets every rank
  /// go on once it is done. Rank 0's exception reaches every rank: the others throw an Error
  /// saying rank 0 failed.
  template <class Work>
  void on_main(Work&& work) const {
    std::exception_ptr error;
    if (is_main()) {
      try {
        std::forward<Work>(work)();
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (group_) {
      require_intact();
      std::vector<at::Tensor> failed{at::full({1}, error ? 1 : 0, at::kInt)};
      run_collective("on_main's result", [&] { return group_->broadcast(failed); });
      if (!is_main() && failed[0].item<int>() != 0) {
        throw Error("distributed: rank 0 failed in work done on rank 0 only (see rank 0's error)");
      }
    }
    if (error) std::rethrow_exception(error);
  }

 private:
  /// Largest flat buffer of parameters one broadcast carries.
  static constexpr std::size_t bucket_bytes = std::size_t{25} << 20;

  /// The buckets of a module's gradients, made (and hooked) on first use and kept with the job.
  /// After a failed collective the ranks no longer agree on what comes next: the job is over.
  void require_intact() const {
    if (gradients_->broken->broken()) {
      throw Error("distributed: rank " + std::to_string(options_.rank) + "'s job is broken by " +
                  gradients_->broken->why() + "; start a new job");
    }
  }

  /// Begins a step of the module's buckets (made and hooked on first use, kept with the job).
  /// When this rank cannot average the module's gradients it still takes part in the step (the
  /// others learn of it), then throws.
  template <class Module>
  std::shared_ptr<detail::GradientBuckets> begin_step(Module& module, std::size_t items) const {
    require_intact();
    std::vector<at::Tensor> parameters;
    for (const auto& parameter : module->parameters()) {
      if (parameter.requires_grad()) parameters.push_back(parameter);
    }
    std::shared_ptr<detail::GradientBuckets> buckets;
    std::string problem;
    {
      std::scoped_lock lock(gradients_->mutex);
      auto& kept = gradients_->of_module[static_cast<const void*>(&*module)];
      if (!kept || !same_tensors(kept->parameters(), parameters)) {
        kept.reset();
        problem = detail::gradient_problem(parameters);
        if (problem.empty()) {
          kept = std::make_shared<detail::GradientBuckets>(std::move(parameters), group_,
                                                           options_.bucket_bytes, gradients_->broken);
          kept->attach();
        }
      }
      buckets = kept;
    }
    if (!buckets) {
      fail_step();
      throw Error("distributed: " + problem);
    }
    try {
      buckets->begin(items);
    } catch (const Error&) {  // a step of another thread: the ranks may now issue different collectives
      gradients_->broken->mark("a data-parallel step begun while another was under way");
      throw;
    }
    return buckets;
  }

  /// The same parameters, still of the same type, size and device (module->to() keeps them).
  static bool same_tensors(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const at::Tensor& x, const at::Tensor& y) {
      return x.is_same(y) && x.scalar_type() == y.scalar_type() && x.numel() == y.numel() &&
             x.device() == y.device();
    });
  }

  void finish(detail::GradientBuckets& buckets, const std::exception_ptr& backward_failure) const {
    try {
      buckets.finish(backward_failure);
    } catch (const detail::CollectiveFailure& failure) {
      throw collective_error("allreduce of the gradients", failure.what());
    }
  }

  void connect() {
    const std::string where = options_.master_addr + ":" + std::to_string(options_.master_port);
    const std::string who =
        "rank " + std::to_string(options_.rank) + " of " + std::to_string(options_.world_size);
    try {
      c10d::TCPStoreOptions store_options;
      store_options.port = options_.master_port;
      store_options.isServer = options_.rank == 0;
      store_options.numWorkers = static_cast<int>(options_.world_size);
      store_options.waitWorkers = true;
      store_options.timeout = options_.timeout;
      detail::prefer_plain_sockets(store_options);
      auto store = c10::make_intrusive<c10d::TCPStore>(options_.master_addr, store_options);
      auto group_options = c10d::ProcessGroupGloo::Options::create(options_.timeout);
      group_options->devices.push_back(make_device());
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(
          store, static_cast<int>(options_.rank), static_cast<int>(options_.world_size), group_options);
    } catch (const std::exception& e) {
      throw Error("distributed: " + who + " could not join the job at " + where + " (timeout " +
                  seconds_text() + " s): " + error_message(e));
    }
  }

  std::shared_ptr<::gloo::transport::Device> make_device() const {
    if (!options_.interface.empty())
      return c10d::ProcessGroupGloo::createDeviceForInterface(options_.interface);
    if (detail::is_loopback(options_.master_addr))
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    return c10d::ProcessGroupGloo::createDefaultDevice();
  }

  /// Starts a collective (`start` returns its work) and waits for it; its failure (a rank gone,
  /// the timeout passed, or one that could not start) breaks the job and becomes an Error naming
  /// the collective and this rank.
  template <class Start>
  void run_collective(const char* what, Start&& start) const {
    try {
      start()->wait();
    } catch (const std::exception& e) {
      throw collective_error(what, error_message(e));
    }
  }

  /// The Error of a failed collective; the job is broken from then on.
  Error collective_error(const char* what, const std::string& message) const {
    gradients_->broken->mark("an earlier failed collective");
    return Error(std::string("distributed: ") + what + " failed on rank " + std::to_string(options_.rank) +
                 " of " + std::to_string(options_.world_size) +
                 " (a rank left the job or did not answer within " + seconds_text() + " s): " + message);
  }

  /// The timeout in seconds, for messages.
  std::string seconds_text() const {
    char text[32];
    std::snprintf(text, sizeof text, "%g", std::chrono::duration<double>(options_.timeout).count());
    return text;
  }

  std::vector<double> reduce(std::vector<double> values, c10d::ReduceOp::RedOpType op,
                             const char* what) const {
    if (!group_ || values.empty()) return values;
    require_intact();
    at::Tensor flat = at::tensor(values, at::kDouble);
    std::vector<at::Tensor> tensors{flat};
    c10d::AllreduceOptions options;
    options.reduceOp = op;
    run_collective(what, [&] { return group_->allreduce(tensors, options); });
    const double* reduced = flat.data_ptr<double>();
    std::copy(reduced, reduced + values.size(), values.begin());
    return values;
  }

  /// Calls f with consecutive runs of tensors of one type, each at most bucket_bytes (a larger
  /// tensor alone).
  template <class F>
  static void for_each_bucket(const std::vector<at::Tensor>& tensors, F&& f) {
    std::vector<at::Tensor> bucket;
    std::size_t bytes = 0;
    for (const auto& tensor : tensors) {
      const std::size_t size = tensor.numel() * tensor.element_size();
      if (!bucket.empty() &&
          (bucket.front().scalar_type() != tensor.scalar_type() || bytes + size > bucket_bytes)) {
        f(std::move(bucket));
        bucket.clear();
        bytes = 0;
      }
      bucket.push_back(tensor);
      bytes += size;
    }
    if (!bucket.empty()) f(std::move(bucket));
  }

  /// One contiguous copy of the tensors (all of one type), in this machine's memory and in the
  /// type Gloo sends it as (detail::broadcast_type).
  static at::Tensor flatten(const std::vector<at::Tensor>& tensors) {
    const at::ScalarType type = *detail::broadcast_type(tensors.front().scalar_type());
    std::vector<at::Tensor> flat;
    flat.reserve(tensors.size());
    for (const auto& tensor : tensors) flat.push_back(tensor.reshape({-1}).to(at::kCPU, type));
    return at::cat(flat);
  }

  /// Copies the flat buffer back into the tensors it was made of (each in its own type and
  /// memory: every value as it was sent).
  static void unflatten(const at::Tensor& flat, std::vector<at::Tensor>& tensors) {
    std::int64_t offset = 0;
    for (auto& tensor : tensors) {
      tensor.copy_(flat.narrow(0, offset, tensor.numel()).view(tensor.sizes()));
      offset += tensor.numel();
    }
  }

  /// The gradient buckets of each module trained in the job, shared by the job's copies.
  struct GradientRegistry {
    /// Set when the ranks no longer agree on what comes next (shared with the buckets).
    std::shared_ptr<detail::BrokenJob> broken = std::make_shared<detail::BrokenJob>();
    std::mutex mutex;
    std::map<const void*, std::shared_ptr<detail::GradientBuckets>> of_module;
  };

  DistributedOptions options_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  std::shared_ptr<GradientRegistry> gradients_ = std::make_shared<GradientRegistry>();
};

/// @brief One data-parallel optimisation step: forward and backward on this rank's batch, the
/// gradients averaged over the ranks (weighted by batch size), then the optimizer's step, so
/// that every rank's parameters stay equal. An empty batch (a shard's last) joins the average
/// with weight zero. Returns this rank's loss (NaN for an empty batch). The module's parameters
/// must start equal: Distributed::broadcast_parameters once after building the model. With
/// prefetch, the workers prepare batches during the optimizer's update (WorkersMayPrepare).
template <class Module, class Optimizer>
double train_step(const Distributed& job, Module& module, Optimizer& optimizer, const at::Tensor& inputs,
                  const at::Tensor& targets, const LossFunction& loss_function = cross_entropy_loss) {
  module->train();
  optimizer.zero_grad();
  // An empty batch (a shard's last) may hold an undefined tensor rather than one of 0 rows.
  const auto items = inputs.defined() ? static_cast<std::size_t>(inputs.size(0)) : std::size_t{0};
  at::Tensor loss;
  try {
    if (items > 0) loss = loss_function(module->forward(inputs), targets);
  } catch (...) {
    // The other ranks are in the step already: take part in it, so that theirs fails too and
    // the ranks' collectives stay in step. A failure of that (the job is broken) is reported by
    // the next collective; this rank's own error is the one to see.
    try {
      job.fail_step();
    } catch (const std::exception&) {}
    throw;
  }
  job.backward(module, loss, items);
  detail::update_parameters(optimizer);
  return loss.defined() ? loss.template item<double>() : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace batchpipe
