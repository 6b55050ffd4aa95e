#pragma once
/// @file action.hpp
/// @brief BATCHPIPE_ACTION (short: ACTION) registers a batch method as an action;
/// `ActionRegistry<B>` lists a class's actions and calls them by name.

#include <batchpipe/core/action_options.hpp>
#include <batchpipe/core/batch.hpp>
#include <batchpipe/core/detail/action_binding.hpp>
#include <batchpipe/core/detail/runtime_binding.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/chain.hpp>
#include <batchpipe/detail/reserved_names.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <any>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

/// @brief Registers the member function that follows as an action of the batch class.
///
/// `BATCHPIPE_ACTION(normalize)(float mean, float std) { ... }` declares `normalize`, registers
/// it, and gives every `Pipeline` of the class a fluent `normalize(mean, std)` whose arguments are
/// checked at compile time. Options follow the name, like keyword arguments:
/// `BATCHPIPE_ACTION(train, .model = "mlp", .singleton = true)` (see ActionOptions). The body
/// changes the batch in place (return nothing, or `*this`) or returns a new batch. A model-based
/// action takes the model's descriptor by reference first.
///
/// An action may not take the name of a member of Batch or Pipeline (`size`, `index`, `run`,
/// `with`, ...): it would hide that member, so the name stops compilation.
///
/// `ACTION` is the short name of this macro (see BATCHPIPE_NO_SHORT_MACROS).
///
/// @code
/// struct MyBatch : bp::Batch<MyBatch> {
///   BATCHPIPE_ACTION(scale)(float factor) { (*this)["x"] = get("x") * factor; }
/// };
/// @endcode
#define BATCHPIPE_ACTION(name, ...)                                                                    \
  friend struct ::batchpipe::detail::access;                                                           \
  struct bp_action_##name {                                                                            \
    static_assert(!::batchpipe::detail::is_reserved_action_name(#name),                                \
                  "this ACTION's name would hide a member of bp::Batch or bp::Pipeline (index, "       \
                  "size, get, set, run, with, append, ...): give the action another name");            \
    using prev =                                                                                       \
        decltype(bp_action_chain(::batchpipe::detail::rank<::batchpipe::detail::max_chain_length>{})); \
    static constexpr int depth = prev::depth + 1;                                                      \
    static_assert(depth < ::batchpipe::detail::max_chain_length, "too many ACTIONs in one class");     \
    static constexpr ::std::string_view label = #name;                                                 \
    static constexpr ::batchpipe::ActionOptions options{__VA_ARGS__};                                  \
    template <class bp_B>                                                                              \
    static constexpr auto pointer() -> decltype(&bp_B::name) {                                         \
      return &bp_B::name;                                                                              \
    }                                                                                                  \
    template <class bp_B, class... bp_A>                                                               \
    static constexpr bool invocable = requires(bp_B & bp_batch, bp_A&&... bp_args) {                   \
      bp_batch.name(static_cast<bp_A&&>(bp_args)...);                                                  \
    };                                                                                                 \
    template <class bp_B, class... bp_A>                                                               \
    static decltype(auto) invoke(bp_B& bp_batch, bp_A&&... bp_args) {                                  \
      return bp_batch.name(static_cast<bp_A&&>(bp_args)...);                                           \
    }                                                                                                  \
    template <class bp_P>                                                                              \
    struct fluent : prev::template fluent<bp_P> {                                                      \
      template <class... bp_A>                                                                         \
      [[nodiscard("a pipeline is a value: chaining returns a new one")]] bp_P name(                    \
          bp_A&&... bp_args) const {                                                                   \
        return ::batchpipe::detail::append_action<bp_action_##name>(static_cast<const bp_P&>(*this),   \
                                                                    static_cast<bp_A&&>(bp_args)...);  \
      }                                                                                                \
    };                                                                                                 \
  };                                                                                                   \
  static bp_action_##name bp_action_chain(::batchpipe::detail::rank<bp_action_##name::depth>);         \
  decltype(auto) name

/// @def ACTION
/// @brief The short name of BATCHPIPE_ACTION. Define BATCHPIPE_NO_SHORT_MACROS before including
/// batchpipe when `ACTION` or `MODEL` is taken in your code (GoogleMock defines an `ACTION`).
#ifndef BATCHPIPE_NO_SHORT_MACROS
#ifdef ACTION
#error \
    "ACTION is already defined (by GoogleMock?): define BATCHPIPE_NO_SHORT_MACROS before including batchpipe and write BATCHPIPE_ACTION"
#endif
#define ACTION(...) BATCHPIPE_ACTION(__VA_ARGS__)
#endif

namespace batchpipe {

/// @brief The actions of batch class B, in order of declaration: listed, and called by name with
/// arguments checked at run time (for pipelines built from configuration).
///
/// @code
/// for (const auto& a : MyBatch::actions().list()) std::cout << a.name << '\n';
/// MyBatch::actions().call(batch, "normalize", {0.5f, 0.25f});
/// auto p = dataset.pipeline().append("normalize", {0.5, 0.25});   // doubles convert to float
/// @endcode
template <class B>
class ActionRegistry {
 public:
  /// Not copyable: a class has one registry, instance().
  ActionRegistry(const ActionRegistry&) = delete;
  /// Not assignable: a class has one registry, instance().
  ActionRegistry& operator=(const ActionRegistry&) = delete;

  /// The registry of B, made on first use (thread-safe); `B::actions()` returns it.
  static const ActionRegistry& instance() {
    static const ActionRegistry registry;
    return registry;
  }

  /// Each action's name, options and parameters, in order of declaration.
  std::vector<ActionInfo> list() const {
    std::vector<ActionInfo> result;
    for (const auto& entry : entries_) result.push_back(entry->info);
    return result;
  }

  /// True when B has an action `name`.
  bool contains(std::string_view name) const { return find(name) != nullptr; }

  /// What the registry says of action `name`; an Error when B has no such action.
  const ActionInfo& info(std::string_view name) const { return at(name).info; }

  /// Runs action `name` on `batch` now, whatever its `p`, with run-time checked arguments (as
  /// Pipeline::append checks them). An Error for an unknown action, one that cannot be called by
  /// name, or arguments that do not fit.
  void call(B& batch, std::string_view name, std::vector<std::any> args = {}) const {
    bind(name, std::move(args))->apply(batch);
  }

  /// The step of action `name` with `args` bound; an Error for an unknown action or arguments
  /// that do not fit.
  detail::StepPtr<B> bind(std::string_view name, std::vector<std::any> args) const {
    const auto& entry = at(name);
    if (!entry.bind_by_name) {
      throw Error("action '" + entry.info.name + "' of " + detail::type_name<B>() +
                  " cannot be called by name: it is overloaded or a template");
    }
    return entry.bind_by_name(args);
  }

  /// The step of action `name` with named arguments `args` (a config object: parameter name to
  /// value or expression object), defaults where omitted; errors begin with `where` (a file and
  /// a place in it). See Pipeline::from_config.
  detail::StepPtr<B> bind_keywords(std::string_view name, const Config& args,
                                   const std::string& where) const {
    const auto* entry = find(name);
    if (!entry) throw Error(where + ": " + unknown_action_message(name));
    if (!entry->bind_by_keywords) {
      throw Error(where + ": action '" + entry->info.name + "' of " + detail::type_name<B>() +
                  " cannot be called by name: it is overloaded or a template");
    }
    return entry->bind_by_keywords(args, where);
  }

  /// The entry of Action (its depth in the chain is its place here).
  template <class Action>
  const detail::ActionEntry<B>& entry() const {
    return *entries_[Action::depth - 1];
  }

 private:
  ActionRegistry() {
    detail::for_each_link<detail::access::last_action<B>>([this]<class Action>() {
      auto entry = std::make_unique<detail::ActionEntry<B>>();
      entry->info = detail::describe_action<B, Action>();
      if constexpr (detail::nameable_action<B, Action>) {
        entry->bind_by_name = &detail::bind_by_name<B, Action>;
        entry->bind_by_keywords = &detail::bind_by_keywords<B, Action>;
      }
      entries_.push_back(std::move(entry));
    });
  }

  const detail::ActionEntry<B>* find(std::string_view name) const {
    for (const auto& entry : entries_) {
      if (entry->info.name == name) return entry.get();
    }
    return nullptr;
  }

  const detail::ActionEntry<B>& at(std::string_view name) const {
    if (const auto* entry = find(name)) return *entry;
    throw Error(unknown_action_message(name));
  }

  std::string unknown_action_message(std::string_view name) const {
    return detail::type_name<B>() + " has no action '" + std::string(name) +
           "' (actions: " + detail::join_names(entries_, [](const auto& entry) { return entry->info.name; }) +
           ")";
  }

  std::vector<std::unique_ptr<detail::ActionEntry<B>>> entries_;
};

namespace detail {
template <class B, class Action>
const ActionEntry<B>& entry_of() {
  return ActionRegistry<B>::instance().template entry<Action>();
}
}  // namespace detail

template <class Derived>
const ActionRegistry<Derived>& Batch<Derived>::actions() {
  return ActionRegistry<Derived>::instance();
}

}  // namespace batchpipe
