#pragma once
// How an action meets a batch: a pipeline's arguments are stored and converted to the action's
// parameter types (checked at compile time for fluent calls, at run time for calls by name), the
// action's model is fetched from the class's directory, the singleton lock is taken, and a batch
// the action returns replaces the old one. The result is a Step, which a pipeline keeps.

#include <batchpipe/core/action_options.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/model.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/chain.hpp>
#include <batchpipe/detail/traits.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <any>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace batchpipe::detail {

template <class B>
struct ActionEntry;

/// One action of a pipeline, with its arguments bound. Shared, immutable, and applied to many
/// batches at once.
template <class B>
struct Step {
  const ActionEntry<B>* action;
  /// Runs the action on the batch; a batch the action returns replaces it.
  std::function<void(B&)> apply;
};

template <class B>
using StepPtr = std::shared_ptr<const Step<B>>;

/// A registered action: its description, its singleton lock, and how to bind it by name.
template <class B>
struct ActionEntry {
  ActionInfo info;
  mutable std::mutex singleton_mutex;
  StepPtr<B> (*bind_by_name)(std::vector<std::any>& args) = nullptr;
};

/// Declared here for the ACTION macro, defined in pipeline.hpp.
template <class Action, class Pipeline, class... A>
Pipeline append_action(const Pipeline& pipeline, A&&... args);

/// The descriptor type of the model that Action uses (chain_root when it uses none). Naming a
/// model the class does not define stops compilation here.
template <class B, class Action>
struct action_model {
  static constexpr int depth = find_link<access::last_model<B>>(Action::options.model);
  static_assert(Action::options.model.empty() || depth > 0,
                "ACTION(..., .model = \"...\"): the batch class has no MODEL of that name");
  using descriptor = typename link_at<access::last_model<B>, depth>::type;
};

template <class B, class Action>
inline constexpr bool uses_model = !Action::options.model.empty();

/// The arguments of Action that a pipeline supplies: its parameters after the model, when the
/// action is a plain member function.
template <class B, class Action>
struct pipeline_parameters {
  using all = typename member_function_traits<decltype(Action::template pointer<B>())>::parameters;
  using type =
      typename std::conditional_t<uses_model<B, Action>, drop_first<all>, std::type_identity<all>>::type;
};

template <class B, class Action>
concept nameable_action = requires {
  Action::template pointer<B>();
};

/// How a pipeline keeps an argument bound to parameter type Param: a non-const reference
/// parameter keeps a reference to the caller's object, anything else a converted copy.
template <class Param, class Arg>
auto store_argument(Arg&& arg) {
  using Value = std::remove_cvref_t<Param>;
  if constexpr (is_reference_wrapper<std::remove_cvref_t<Arg>>::value) {
    return arg;
  } else if constexpr (std::is_lvalue_reference_v<Param> &&
                       !std::is_const_v<std::remove_reference_t<Param>>) {
    static_assert(std::is_lvalue_reference_v<Arg&&>,
                  "an action parameter that is a non-const reference binds to the caller's "
                  "object: pass a named object that outlives the run");
    return std::reference_wrapper<Value>(arg);
  } else {
    static_assert(std::is_convertible_v<Arg&&, Value>,
                  "a pipeline argument does not convert to the type of the action's parameter");
    if constexpr (std::is_convertible_v<Arg&&, Value>) {
      Value value = std::forward<Arg>(arg);
      return value;
    }
  }
}

/// The arguments bound for Action, converted to its parameter types when they are known.
template <class B, class Action, class... A>
auto store_arguments(A&&... args) {
  if constexpr (nameable_action<B, Action>) {
    using Params = typename pipeline_parameters<B, Action>::type;
    static_assert(sizeof...(A) <= std::tuple_size_v<Params>, "too many arguments for this action");
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return std::tuple<decltype(store_argument<std::tuple_element_t<I, Params>>(std::forward<A>(args)))...>(
          store_argument<std::tuple_element_t<I, Params>>(std::forward<A>(args))...);
    }
    (std::index_sequence_for<A...>{});
  } else {
    return std::tuple<std::decay_t<A>...>(std::forward<A>(args)...);
  }
}

/// Puts the batch an action returned in place of the old one. A returned batch without an
/// index (made from scratch) takes the old batch's items; number, epoch and random stream carry on.
template <class B>
void adopt_batch(B& batch, B&& result) {
  if (&batch == &result) return;
  if (result.size() == 0 && batch.size() != 0) access::index(result) = access::index(batch);
  access::number(result) = access::number(batch);
  access::epoch(result) = access::epoch(batch);
  access::random(result) = access::random(batch);
  access::variables(result) = access::variables(batch);
  batch = std::move(result);
}

/// Calls Action on the batch with its model (if any) and the unwrapped stored arguments, under
/// the singleton lock when the action is a singleton.
template <class B, class Action, class... A>
void run_action(B& batch, const ActionEntry<B>& entry, const A&... stored) {
  std::unique_lock<std::mutex> lock(entry.singleton_mutex, std::defer_lock);
  if constexpr (Action::options.singleton) lock.lock();
  auto call = [&](auto&... model) -> decltype(auto) {
    return Action::template invoke<B>(batch, model..., unwrap_argument(stored)...);
  };
  auto finish = [&](auto&... model) {
    using Result = decltype(call(model...));
    static_assert(std::is_void_v<Result> || std::is_same_v<std::remove_cvref_t<Result>, B>,
                  "an ACTION returns nothing, *this, or a new batch of its class");
    if constexpr (std::is_void_v<Result>) {
      call(model...);
    } else if constexpr (std::is_lvalue_reference_v<Result>) {
      auto& returned = call(model...);
      // Another batch's contents replace this one's (a copy: the other batch is not ours), and
      // this batch keeps its place in the run, as for a batch returned by value.
      if (&returned != &batch) adopt_batch(batch, B(returned));
    } else {
      adopt_batch(batch, call(model...));
    }
  };
  if constexpr (uses_model<B, Action>) {
    using Model = model_type_t<B, typename action_model<B, Action>::descriptor>;
    std::shared_ptr<Model> model = B::models().template get<Model>(Action::options.model);
    finish(*model);
  } else {
    finish();
  }
}

/// Checks at compile time that Action accepts its model (if any) and the stored arguments.
template <class B, class Action, class Stored>
constexpr void check_binding() {
  []<class... S>(std::tuple<S...>*) {
    if constexpr (uses_model<B, Action>) {
      using Model = model_type_t<B, typename action_model<B, Action>::descriptor>;
      static_assert(
          Action::template invocable<B, Model&, decltype(unwrap_argument(std::declval<const S&>()))...>,
          "this ACTION cannot be called with its model's descriptor (by reference, "
          "first) and these arguments: check the first parameter's type and the "
          "arguments' types");
    } else {
      static_assert(Action::template invocable<B, decltype(unwrap_argument(std::declval<const S&>()))...>,
                    "this ACTION cannot be called with these arguments: check their number and types");
    }
  }(static_cast<Stored*>(nullptr));
}

template <class B, class Action>
const ActionEntry<B>& entry_of();

/// Binds stored arguments to Action: the step a pipeline keeps.
template <class B, class Action, class Stored>
StepPtr<B> make_step(Stored stored) {
  check_binding<B, Action, Stored>();
  const ActionEntry<B>& entry = entry_of<B, Action>();
  auto apply = [stored = std::move(stored), &entry](B& batch) {
    std::apply([&](const auto&... args) { run_action<B, Action>(batch, entry, args...); }, stored);
  };
  return std::make_shared<const Step<B>>(Step<B>{&entry, std::move(apply)});
}

/// A run-time argument converted to T: exact type, or any arithmetic type to an arithmetic T,
/// or a C string to std::string.
template <class T>
T argument_from_any(const std::any& value, const ActionInfo& action, std::size_t position) {
  if (const T* exact = std::any_cast<T>(&value)) return *exact;
  if constexpr (std::is_arithmetic_v<T>) {
    using Types =
        std::tuple<bool, char, int, unsigned, long, unsigned long, long long, unsigned long long, float,
                   double, long double, std::int8_t, std::uint8_t, std::int16_t, std::uint16_t>;
    std::optional<T> converted;
    [&]<class... N>(std::tuple<N...>*) {
      ((converted || !std::any_cast<N>(&value) ? void()
                                               : void(converted = static_cast<T>(*std::any_cast<N>(&value)))),
       ...);
    }(static_cast<Types*>(nullptr));
    if (converted) return *converted;
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (const auto* text = std::any_cast<const char*>(&value)) return std::string(*text);
  }
  throw Error("action '" + action.name + "': argument " + std::to_string(position + 1) + " must be " +
              type_name<T>() + ", got " +
              (value.has_value() ? type_name(value.type()) : std::string("nothing")));
}

/// Binds run-time arguments to Action, checking their number and types.
template <class B, class Action>
StepPtr<B> bind_by_name(std::vector<std::any>& args) {
  using Params = typename pipeline_parameters<B, Action>::type;
  const ActionInfo& info = entry_of<B, Action>().info;
  constexpr std::size_t arity = std::tuple_size_v<Params>;
  if (args.size() != arity) {
    throw Error("action '" + info.name + "' of " + type_name<B>() + " takes " + std::to_string(arity) +
                " argument(s), got " + std::to_string(args.size()));
  }
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    auto convert = [&]<std::size_t J>() {
      using Param = std::tuple_element_t<J, Params>;
      using Value = std::remove_cvref_t<Param>;
      if constexpr (std::is_lvalue_reference_v<Param> && !std::is_const_v<std::remove_reference_t<Param>>) {
        return argument_from_any<std::reference_wrapper<Value>>(args[J], info, J);
      } else {
        return argument_from_any<Value>(args[J], info, J);
      }
    };
    (void)convert;  // unused when the action takes no arguments
    return make_step<B, Action>(std::tuple{convert.template operator()<I>()...});
  }
  (std::make_index_sequence<arity>{});
}

template <class B, class Action>
ActionInfo describe_action() {
  ActionInfo info{std::string(Action::label),
                  std::string(Action::options.model),
                  Action::options.singleton,
                  Action::options.p,
                  {},
                  false};
  if constexpr (nameable_action<B, Action>) {
    [&]<class... P>(std::tuple<P...>*) {
      (info.parameters.push_back(type_name<P>() + (std::is_lvalue_reference_v<P> ? "&" : "")), ...);
    }(static_cast<typename pipeline_parameters<B, Action>::type*>(nullptr));
    info.callable_by_name = true;
  }
  return info;
}

}  // namespace batchpipe::detail
