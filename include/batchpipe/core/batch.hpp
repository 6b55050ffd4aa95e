#pragma once
/// @file batch.hpp
/// @brief `Batch<Derived>`: the CRTP base of every batch class. A batch holds its index and named
/// components (tensors by default, any type allowed) and its own random stream.

#include <batchpipe/core/detail/run_context.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/index.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/core/variables.hpp>
#include <batchpipe/detail/chain.hpp>
#include <batchpipe/detail/deferred_tensor.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/detail/type_name.hpp>
#include <batchpipe/fwd.hpp>

#include <ATen/core/Tensor.h>

#include <any>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace batchpipe {

/// @brief The base of a batch class: `struct MyBatch : bp::Batch<MyBatch> { ... };`.
///
/// Components are named values. A tensor component's first dimension follows the batch's items;
/// other types (a vector of strings, a struct) are allowed and read with `get<T>`. A batch made
/// from a dataset with preloaded data starts with that data's rows for its items.
///
/// @code
/// struct MyBatch : bp::Batch<MyBatch> {
///   ACTION(scale)(float factor) { (*this)["images"] = get("images") * factor; }
/// };
/// MyBatch batch;
/// batch["images"] = at::ones({4, 28, 28});
/// at::Tensor first = batch.item(0)["images"];      // one item's row
/// @endcode
template <class Derived>
class Batch {
 public:
  /// The batch class itself, Derived.
  using batch_type = Derived;

  /// The batch's items: ids, their source rows and, for a files index, their paths.
  const Index& index() const noexcept { return index_; }
  /// Number of items.
  std::size_t size() const noexcept { return index_.size(); }
  /// The batch's number in its run, counted from 0 across epochs.
  std::size_t number() const noexcept { return number_; }
  /// The epoch the batch belongs to.
  std::size_t epoch() const noexcept { return epoch_; }
  /// The batch's own random stream, derived from the run's seed and the batch number.
  Random& random() noexcept { return random_; }

  /// Drops the batch from its run: no action after the one calling this runs on it, it is not
  /// delivered, and RunStats::skipped counts it. The batches after it keep their order.
  void skip() noexcept { skipped_ = true; }
  /// True once an action has called skip().
  bool skipped() const noexcept { return skipped_; }

  /// The variable `name` of the pipeline running this batch (see variables.hpp).
  template <class T>
  Variable<T> variable(std::string_view name) const {
    return context_ ? context_->variables.template get<T>(name) : Variables().template get<T>(name);
  }

  /// The config of the pipeline running this batch (Pipeline::with_config); empty for a batch
  /// that no pipeline runs.
  const Config& config() const noexcept {
    static const Config empty;
    return context_ ? context_->config : empty;
  }

  /// The tensor component `name`, created undefined when missing (for assignment).
  at::Tensor& operator[](std::string_view name) {
    auto found = components_.find(name);
    if (found == components_.end()) {
      found = components_.emplace(std::string(name), at::Tensor()).first;
    }
    if (has_deferred_) detail::settle(found->second);
    return cast<at::Tensor>(name, found->second);
  }

  /// The component `name` as a T (a tensor unless said); an Error naming the component when it
  /// is missing or holds another type.
  template <class T = at::Tensor>
  T& get(std::string_view name) {
    return cast<T>(name, find(name));
  }
  /// The component `name` as a T, read-only; an Error when it is missing or holds another type.
  template <class T = at::Tensor>
  const T& get(std::string_view name) const {
    return cast<T>(name, const_cast<Batch*>(this)->find(name));
  }

  /// The component `name` if it exists and holds a T, else nullptr.
  template <class T = at::Tensor>
  T* try_get(std::string_view name) {
    auto found = components_.find(name);
    if (found == components_.end()) return nullptr;
    if (has_deferred_) detail::settle(found->second);
    return std::any_cast<T>(&found->second);
  }

  /// Sets (or replaces) component `name`.
  template <class T>
  void set(std::string_view name, T value) {
    if constexpr (std::is_same_v<T, detail::DeferredTensor>) has_deferred_ = true;
    components_.insert_or_assign(std::string(name), std::any(std::move(value)));
  }

  /// True when the batch has a component `name`, of any type.
  bool has(std::string_view name) const { return components_.find(name) != components_.end(); }

  /// Removes component `name`, if there is one.
  void erase(std::string_view name) {
    if (auto found = components_.find(name); found != components_.end()) components_.erase(found);
  }

  /// Component names, sorted.
  std::vector<std::string> components() const {
    std::vector<std::string> names;
    for (const auto& entry : components_) names.push_back(entry.first);
    return names;
  }

  /// @brief One item of a batch: its id and its rows of the tensor components.
  ///
  /// It refers to the batch: use it only while the batch lives and stays where it is.
  class Item {
   public:
    /// The item's id.
    Id id() const { return batch_->index().id(position_); }
    /// The item's position in the batch (0 .. size()-1).
    std::size_t position() const noexcept { return position_; }
    /// The item's row of tensor component `name` (a view: writing to it writes the batch).
    at::Tensor operator[](std::string_view name) const {
      return batch_->get(name).select(0, static_cast<int64_t>(position_));
    }
    /// The item's element of a component that is a std::vector<T>; an Error when the vector has
    /// fewer elements than the batch has items.
    template <class T>
    T& get(std::string_view name) const {
      auto& values = batch_->template get<std::vector<T>>(name);
      if (position_ >= values.size()) {
        throw Error("component '" + std::string(name) + "' has " + std::to_string(values.size()) +
                    " elements, too few for item " + std::to_string(position_) + " of a batch of " +
                    std::to_string(batch_->size()));
      }
      return values[position_];
    }

   private:
    friend class Batch;
    Item(Batch* batch, std::size_t position) : batch_(batch), position_(position) {}
    Batch* batch_;
    std::size_t position_;
  };

  /// The item at `position` (0 .. size()-1).
  Item item(std::size_t position) {
    if (position >= size()) {
      throw Error(detail::type_name<Derived>() + ": item " + std::to_string(position) +
                  " is out of range (batch of " + std::to_string(size()) + ")");
    }
    return Item(this, position);
  }

  /// The class's model directory (see model.hpp).
  static ModelDirectory<Derived>& models();
  /// The class's registered actions (see action.hpp).
  static const ActionRegistry<Derived>& actions();

  // The ends of the ACTION and MODEL chains (detail/chain.hpp); not for users.
  using bp_self_t = Derived;
  static detail::chain_root bp_action_chain(detail::rank<0>);
  static detail::chain_root bp_model_chain(detail::rank<0>);

 private:
  friend struct detail::access;

  std::any& find(std::string_view name) {
    auto found = components_.find(name);
    if (found != components_.end()) {
      if (has_deferred_) detail::settle(found->second);
      return found->second;
    }
    throw Error(detail::type_name<Derived>() + ": no component '" + std::string(name) + "' (components: " +
                detail::join_names(components_, [](const auto& entry) { return entry.first; }) + ")");
  }

  template <class T>
  static T& cast(std::string_view name, std::any& value) {
    if (auto* typed = std::any_cast<T>(&value)) return *typed;
    throw Error(detail::type_name<Derived>() + ": component '" + std::string(name) + "' holds " +
                detail::type_name(value.type()) + ", not " + detail::type_name<T>());
  }

  Index index_;
  std::size_t number_ = 0;
  std::size_t epoch_ = 0;
  Random random_;
  detail::RunContextPtr context_;
  bool skipped_ = false;
  bool has_deferred_ = false;  // a component may hold a deferred tensor (detail/deferred_tensor.hpp)
  std::map<std::string, std::any, std::less<>> components_;
};

}  // namespace batchpipe
