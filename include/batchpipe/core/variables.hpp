#pragma once
/// @file variables.hpp
/// @brief Pipeline variables: named values (loss history, metrics, counters) created with a
/// pipeline, updated by its actions under prefetch, read during or after a run.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeindex>
#include <utility>
#include <vector>

namespace batchpipe {

namespace detail {
template <class T>
struct VariableSlot {
  mutable std::mutex mutex;
  T value;
};
}  // namespace detail

/// @brief A handle to one pipeline variable: every access takes the variable's lock, so actions
/// on several batches at once may update it.
///
/// @code
/// ACTION(train, .model = "mlp")(Net& net) {
///   float loss = ...;
///   variable<std::vector<float>>("loss").update([&](auto& history) { history.push_back(loss); });
/// }
/// @endcode
template <class T>
class Variable {
 public:
  /// A copy of the current value.
  T value() const {
    std::scoped_lock lock(slot_->mutex);
    return slot_->value;
  }

  /// Replaces the value.
  void set(T value) {
    std::scoped_lock lock(slot_->mutex);
    slot_->value = std::move(value);
  }

  /// Calls f(value&) under the variable's lock and returns what f returns.
  template <class F>
  decltype(auto) update(F&& f) {
    std::scoped_lock lock(slot_->mutex);
    return std::forward<F>(f)(slot_->value);
  }

 private:
  friend class Variables;
  explicit Variable(std::shared_ptr<detail::VariableSlot<T>> slot) : slot_(std::move(slot)) {}
  std::shared_ptr<detail::VariableSlot<T>> slot_;
};

/// @brief The variables of a pipeline, by name. A pipeline's variables are shared with the
/// pipelines chained from it (they see the same values); adding a variable makes a new set, so
/// the pipeline it was added to is unchanged.
///
/// @code
/// auto training = dataset.pipeline().init_variable("loss", std::vector<float>{}).train();
/// training.run({.batch_size = 64});
/// for (float loss : training.variables().value<std::vector<float>>("loss")) std::cout << loss << '\n';
/// @endcode
class Variables {
 public:
  /// The variable `name` as a T; an Error naming it when it is missing or of another type.
  template <class T>
  Variable<T> get(std::string_view name) const {
    auto found = slots_.find(name);
    if (found == slots_.end()) {
      throw Error("no pipeline variable '" + std::string(name) + "' (variables: " +
                  detail::join_names(slots_, [](const auto& entry) { return entry.first; }) + ")");
    }
    if (found->second.type != typeid(T)) {
      throw Error("pipeline variable '" + std::string(name) + "' is a " +
                  detail::type_name(found->second.type) + ", not a " + detail::type_name<T>());
    }
    return Variable<T>(std::static_pointer_cast<detail::VariableSlot<T>>(found->second.slot));
  }

  /// The value of variable `name` now.
  template <class T>
  T value(std::string_view name) const {
    return get<T>(name).value();
  }

  /// True when there is a variable `name`.
  bool contains(std::string_view name) const { return slots_.find(name) != slots_.end(); }

  /// The variables' names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    for (const auto& entry : slots_) result.push_back(entry.first);
    return result;
  }

  /// The value of variable `name` now as a number, when it has one: a number, a type with a
  /// numeric `value()` (bp::Accuracy), the last element of a vector of numbers. Nothing for other
  /// types, an empty vector, or a missing variable. What progress bars and plots show.
  std::optional<double> number(std::string_view name) const {
    auto found = slots_.find(name);
    if (found == slots_.end() || !found->second.read_number) return std::nullopt;
    return found->second.read_number(found->second.slot.get());
  }

  /// True when variable `name` is of a type number() reads (it may hold no number yet).
  bool is_numeric(std::string_view name) const {
    auto found = slots_.find(name);
    return found != slots_.end() && found->second.read_number;
  }

  /// A copy of this set with `name` added (or replaced) holding `initial`.
  template <class T>
  Variables with(std::string name, T initial) const {
    Variables result = *this;
    auto slot = std::make_shared<detail::VariableSlot<T>>();
    slot->value = std::move(initial);
    result.slots_.insert_or_assign(std::move(name), Entry{std::move(slot), typeid(T), number_reader<T>()});
    return result;
  }

  /// This set with the other's variables added; on a name in both, this set's wins.
  Variables merged(const Variables& other) const {
    Variables result = *this;
    result.slots_.insert(other.slots_.begin(), other.slots_.end());
    return result;
  }

 private:
  struct Entry {
    std::shared_ptr<void> slot;
    std::type_index type;
    std::optional<double> (*read_number)(const void* slot) = nullptr;  // null: not a number
  };

  // The kinds of value a variable can show as a number (Variables::number).
  // (Not std::optional: its value() throws when empty.)
  template <class T>
  static constexpr bool has_numeric_value = !requires(const T& v) {
    v.has_value();
  }
  &&requires(const T& v) { requires std::is_arithmetic_v<std::decay_t<decltype(v.value())>>; };
  template <class T>
  static constexpr bool is_number_sequence = !std::is_same_v<T, std::string> && requires(const T& v) {
    requires std::is_arithmetic_v<typename T::value_type>;
    v.empty();
    v.back();
  };

  template <class T>
  static auto number_reader() -> std::optional<double> (*)(const void*) {
    if constexpr (std::is_arithmetic_v<T> || has_numeric_value<T> || is_number_sequence<T>) {
      return [](const void* slot) -> std::optional<double> {
        const auto& typed = *static_cast<const detail::VariableSlot<T>*>(slot);
        std::scoped_lock lock(typed.mutex);
        if constexpr (std::is_arithmetic_v<T>) {
          return static_cast<double>(typed.value);
        } else if constexpr (has_numeric_value<T>) {
          return static_cast<double>(typed.value.value());
        } else {
          if (typed.value.empty()) return std::nullopt;
          return static_cast<double>(typed.value.back());
        }
      };
    } else {
      return nullptr;
    }
  }

  std::map<std::string, Entry, std::less<>> slots_;
};

}  // namespace batchpipe
