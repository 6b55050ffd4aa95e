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

/// The gradients of one module's parameters, averaged over the ranks in buckets: flat buffers
/// kept from step to step, each sent (an asynchronous allreduce) as soon as its gradients are
/// in. During a data-parallel backward pass (begin, then the backward, then finish) a hook on
/// each parameter hands over its gradient as autograd computes it, so the first buckets travel
/// while the backward pass goes on; average_gradients hands over finished gradients instead.
///
/// Buckets hold the parameters in reverse order (the order a backward pass reaches them) and go
/// out strictly in bucket order, so every rank issues the same collectives in the same order.
/// The last bucket carries one more slot, the rank's item count: each rank's gradients are
/// scaled by its items before the sum and divided by the sum of items after it.
class GradientBuckets : public std::enable_shared_from_this<GradientBuckets> {
 public:
  GradientBuckets(std::vector<at::Tensor> parameters, c10::intrusive_ptr<c10d::ProcessGroupGloo> group,
                  std::size_t bucket_bytes)
      : parameters_(std::move(parameters)), group_(std::move(group)), slot_of_(parameters_.size()) {
    for (std::size_t i = parameters_.size(); i-- > 0;) {
      const at::Tensor& parameter = parameters_[i];
      const auto bytes = static_cast<std::size_t>(parameter.numel()) * parameter.element_size();
      if (buckets_.empty() || buckets_.back().type != parameter.scalar_type() ||
          buckets_.back().bytes + bytes > bucket_bytes) {
        buckets_.emplace_back();
        buckets_.back().type = parameter.scalar_type();
      }
      Bucket& bucket = buckets_.back();
      slot_of_[i] = {buckets_.size() - 1, bucket.elements};
      bucket.parameters.push_back(i);
      bucket.elements += parameter.numel();
      bucket.bytes += bytes;
    }
    for (auto& bucket : buckets_) {
      const bool last = &bucket == &buckets_.back();
      bucket.flat = at::zeros({bucket.elements + (last ? 1 : 0)}, at::TensorOptions().dtype(bucket.type));
    }
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

  /// Starts a step of a rank with `items` items: no gradient is in yet.
  void begin(std::size_t items) {
    std::scoped_lock lock(mutex_);
    if (in_step_) {
      throw Error(
          "distributed: a data-parallel step of this module began before the last one ended: "
          "train it from one thread (a singleton action)");
    }
    items_ = static_cast<double>(items);
    next_to_send_ = 0;
    for (auto& bucket : buckets_) {
      bucket.missing = bucket.parameters.size();
      bucket.work.reset();
    }
    received_.assign(parameters_.size(), false);
    error_.clear();
    in_step_ = true;
  }

  /// A parameter's gradient for this step: copied into its bucket, which goes out once full
  /// (after those before it). From a hook, the gradient autograd is about to accumulate.
  void hand_over(std::size_t parameter, const at::Tensor& grad) {
    std::scoped_lock lock(mutex_);
    if (!in_step_ || !grad.defined()) return;
    if (grad.is_sparse()) {
      error_ = "parameter " + std::to_string(parameter) + " has a sparse gradient, which is not averaged";
      return;
    }
    const auto [b, offset] = slot_of_[parameter];
    Bucket& bucket = buckets_[b];
    at::NoGradGuard no_grad;
    at::Tensor slot = bucket.flat.narrow(0, offset, parameters_[parameter].numel());
    if (received_[parameter]) {  // a second backward pass in the step adds to the first
      if (bucket.work) {
        error_ =
            "a parameter's gradient came after its bucket was sent: one backward pass per data-parallel step";
        return;
      }
      slot.add_(grad.reshape({-1}));
      return;
    }
    slot.copy_(grad.reshape({-1}));
    received_[parameter] = true;
    --bucket.missing;
    send_ready();
  }

  /// Ends a step that failed: nothing more is sent for it.
  void abandon() {
    std::scoped_lock lock(mutex_);
    in_step_ = false;
    for (auto& bucket : buckets_) {
      if (!bucket.work) continue;
      try {  // the buffers must be free before the next step; the job is broken anyway
        bucket.work->wait();
      } catch (...) {}
    }
  }

  /// Ends the step: sends what is left (a parameter without a gradient counts as zero), waits for
  /// every bucket and writes the averages into the parameters' gradients. `wait` turns a
  /// collective's failure into an Error.
  template <class Wait>
  void finish(const Wait& wait) {
    std::unique_lock lock(mutex_);
    in_step_ = false;
    if (buckets_.empty()) return;  // nothing trainable: every rank returns here
    if (!error_.empty()) throw Error("distributed: " + error_);
    at::NoGradGuard no_grad;
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      if (received_[i]) continue;
      const auto [b, offset] = slot_of_[i];
      buckets_[b].flat.narrow(0, offset, parameters_[i].numel()).zero_();
      received_[i] = true;
      --buckets_[b].missing;
    }
    send_ready();
    lock.unlock();
    // Every allreduce is waited for, even after one fails: none may still use a buffer when
    // this returns.
    std::exception_ptr failure;
    for (auto& bucket : buckets_) {
      try {
        wait(bucket.work);
      } catch (...) {
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    const double total = buckets_.back().flat[-1].item<double>();
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      at::Tensor& parameter = parameters_[i];
      const auto [b, offset] = slot_of_[i];
      at::Tensor average = buckets_[b].flat.narrow(0, offset, parameter.numel()).view_as(parameter);
      if (total > 0) average.div_(total);
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
    std::int64_t elements = 0;
    std::size_t bytes = 0;
    at::Tensor flat = {};
    std::size_t missing = 0;
    c10::intrusive_ptr<c10d::Work> work = {};
  };

  /// Sends the full buckets that come next in order, scaled by the rank's items.
  void send_ready() {
    while (next_to_send_ < buckets_.size() && buckets_[next_to_send_].missing == 0) {
      Bucket& bucket = buckets_[next_to_send_++];
      if (&bucket == &buckets_.back()) bucket.flat[-1].fill_(1.0);  // becomes the items
      bucket.flat.mul_(items_);
      std::vector<at::Tensor> tensors{bucket.flat};
      bucket.work = group_->allreduce(tensors);
    }
  }

  std::vector<at::Tensor> parameters_;
  std::vector<unsigned> hooks_;  // register_hook's handle of each parameter's hook
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  std::vector<std::pair<std::size_t, std::int64_t>> slot_of_;  // bucket and offset of each parameter
  std::vector<Bucket> buckets_;
  std::mutex mutex_;
  std::vector<bool> received_;
  std::size_t next_to_send_ = 0;
  double items_ = 0;
  bool in_step_ = false;
  std::string error_;
};

}  // namespace detail

/// @brief This process's membership of a data-parallel job: the c10d Gloo process group of
/// every rank, made at construction (the rendezvous), and the collectives training needs.
///
/// Every rank must call the collectives in the same order with the same shapes (as in any c10d
/// program); a rank that leaves or stalls makes the others' next collective fail with an Error
/// within `timeout`, never hang. A world of one process makes no group and every collective is
/// the identity, so one program serves both.
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

  /// Copies rank 0's parameters and buffers into every rank's module.
  template <class Module>
  void broadcast_parameters(Module& module) const {
    if (!group_) return;
    require_intact();
    std::vector<at::Tensor> state = module->parameters();
    for (const auto& buffer : module->buffers()) state.push_back(buffer);
    at::NoGradGuard no_grad;
    for_each_bucket(state, [&](std::vector<at::Tensor> bucket) {
      at::Tensor flat = flatten(bucket);
      std::vector<at::Tensor> tensors{flat};
      wait(group_->broadcast(tensors), "broadcast of the parameters");
      unflatten(flat, bucket);
    });
  }

  /// Replaces every rank's gradients of `module` with their average over the ranks, each rank's
  /// weighted by `items` (the size of its batch), so that ranks with unequal batches (a shard's
  /// last) give the gradient of the whole step's batch. A parameter without a gradient counts as
  /// zero (a rank whose batch was empty). For a step of one's own after its backward pass;
  /// backward() overlaps the averaging with the backward pass instead.
  template <class Module>
  void average_gradients(Module& module, std::size_t items) const {
    if (!group_) return;
    const auto buckets = buckets_for(module);
    buckets->begin(items);
    const auto& parameters = buckets->parameters();
    for (std::size_t i = parameters.size(); i-- > 0;) {
      if (parameters[i].grad().defined()) buckets->hand_over(i, parameters[i].grad());
    }
    finish(*buckets);
  }

  /// The backward pass of `loss` with the gradients of `module` averaged over the ranks as they
  /// come (weighted by `items`, as average_gradients): buckets of gradients travel while the
  /// backward pass goes on. A rank with an empty batch passes an undefined loss and items 0.
  /// One backward pass per step; the parameters' gradients must be zero or unset before it.
  template <class Module>
  void backward(Module& module, const at::Tensor& loss, std::size_t items) const {
    if (!group_) {
      if (loss.defined()) loss.backward();
      return;
    }
    const auto buckets = buckets_for(module);
    buckets->begin(items);
    if (loss.defined()) {
      try {
        loss.backward();
      } catch (...) {
        // This rank sent part of its step: the ranks no longer agree on what comes next. The
        // others' collectives fail when this rank's error ends it (or time out).
        gradients_->broken = true;
        buckets->abandon();
        throw;
      }
    }
    finish(*buckets);
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
  std::vector<double> mean(const Variables& variables, const std::vector<std::string>& names) const {
    std::vector<double> values;
    for (const auto& name : names) {
      const auto value = variables.number(name);
      if (!value)
        throw Error("distributed: pipeline variable '" + name +
                    "' is not a number to average over the ranks");
      values.push_back(*value);
    }
    return mean(std::move(values));
  }

  /// Waits until every rank gets here.
  void barrier() const {
    if (!group_) return;
    require_intact();
    wait(group_->barrier(), "barrier");
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
      wait(group_->broadcast(failed), "on_main's result");
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
    if (gradients_->broken) {
      throw Error("distributed: rank " + std::to_string(options_.rank) +
                  "'s job is broken by an earlier failed collective; start a new job");
    }
  }

  template <class Module>
  std::shared_ptr<detail::GradientBuckets> buckets_for(Module& module) const {
    require_intact();
    std::vector<at::Tensor> parameters;
    for (const auto& parameter : module->parameters()) {
      if (parameter.requires_grad()) parameters.push_back(parameter);
    }
    std::scoped_lock lock(gradients_->mutex);
    auto& buckets = gradients_->of_module[static_cast<const void*>(&*module)];
    if (!buckets || !same_tensors(buckets->parameters(), parameters)) {
      buckets =
          std::make_shared<detail::GradientBuckets>(std::move(parameters), group_, options_.bucket_bytes);
      buckets->attach();
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

  void finish(detail::GradientBuckets& buckets) const {
    buckets.finish(
        [this](const c10::intrusive_ptr<c10d::Work>& work) { wait(work, "allreduce of the gradients"); });
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
                  seconds_text() + " s): " + first_line(e.what()));
    }
  }

  std::shared_ptr<::gloo::transport::Device> make_device() const {
    if (!options_.interface.empty())
      return c10d::ProcessGroupGloo::createDeviceForInterface(options_.interface);
    if (detail::is_loopback(options_.master_addr))
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    return c10d::ProcessGroupGloo::createDefaultDevice();
  }

  /// Waits for a collective; its failure (a rank gone, the timeout passed) becomes an Error
  /// naming the collective and this rank.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const {
    try {
      work->wait();
    } catch (const std::exception& e) {
      gradients_->broken = true;
      throw Error(std::string("distributed: ") + what + " failed on rank " + std::to_string(options_.rank) +
                  " of " + std::to_string(options_.world_size) +
                  " (a rank left the job or did not answer within " + seconds_text() +
                  " s): " + first_line(e.what()));
    }
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
    wait(group_->allreduce(tensors, options), what);
    const double* reduced = flat.data_ptr<double>();
    std::copy(reduced, reduced + values.size(), values.begin());
    return values;
  }

  /// c10d's messages carry a C++ stack trace after their first line.
  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

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

  /// One contiguous copy of the tensors.
  static at::Tensor flatten(const std::vector<at::Tensor>& tensors) {
    std::vector<at::Tensor> flat;
    flat.reserve(tensors.size());
    for (const auto& tensor : tensors) flat.push_back(tensor.reshape({-1}));
    return at::cat(flat);
  }

  /// Copies the flat buffer back into the tensors it was made of.
  static void unflatten(const at::Tensor& flat, std::vector<at::Tensor>& tensors) {
    std::int64_t offset = 0;
    for (auto& tensor : tensors) {
      tensor.copy_(flat.narrow(0, offset, tensor.numel()).view_as(tensor));
      offset += tensor.numel();
    }
  }

  /// The gradient buckets of each module trained in the job, shared by the job's copies.
  struct GradientRegistry {
    std::atomic<bool> broken{false};
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
  const at::Tensor loss = items > 0 ? loss_function(module->forward(inputs), targets) : at::Tensor();
  job.backward(module, loss, items);
  detail::update_parameters(optimizer);
  return loss.defined() ? loss.template item<double>() : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace batchpipe
