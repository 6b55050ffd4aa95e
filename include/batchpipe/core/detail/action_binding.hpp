#pragma once
// How an action meets a batch: a pipeline's arguments are stored and converted to the action's
// parameter types (checked at compile time for fluent calls; runtime_binding.hpp binds calls by
// name), expressions among them are evaluated for each batch, the
// action's model is fetched from the class's directory, the singleton lock is taken, and a batch
// the action returns replaces the old one. The result is a Step, which a pipeline keeps.

#include <batchpipe/core/action_options.hpp>
#include <batchpipe/core/detail/run_context.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/expressions.hpp>
#include <batchpipe/core/model.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/chain.hpp>
#include <batchpipe/detail/parameter_list.hpp>
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
  /// The probability that a batch goes through the step, decided when a run starts
  /// (Pipeline::with_probability); unset: the action's own `.p`.
  std::function<double(const RunContext&)> probability = nullptr;
  /// Not an action but a re-cut of the stream into batches of this many items (Pipeline::rebatch);
  /// 0 for an action.
  std::size_t rebatch_size = 0;
  /// A join whose joined pipeline has actions that work with a model (Pipeline::join).
  bool joins_a_model = false;

  /// Whether the step works with a model: its action's (`.model`), or a joined pipeline's.
  bool uses_model() const { return joins_a_model || !action->info.model.empty(); }
};

template <class B>
using StepPtr = std::shared_ptr<const Step<B>>;

/// A registered action: its description, its singleton lock, and how to bind it by name.
template <class B>
struct ActionEntry {
  ActionInfo info;
  mutable std::mutex singleton_mutex;
  /// Binds positional arguments checked at run time (Pipeline::append).
  StepPtr<B> (*bind_by_name)(std::vector<std::any>& args) = nullptr;
  /// Binds named arguments read from a config (Pipeline::from_config); `where` names the place.
  StepPtr<B> (*bind_by_keywords)(const Config& args, const std::string& where) = nullptr;
};

/// The entry of a step that is not one of the class's actions (rebatch, join): a name for
/// profiles, errors and action_names().
template <class B>
const ActionEntry<B>& builtin_entry(std::string_view name) {
  auto named = [](const char* text) {
    auto entry = std::make_unique<ActionEntry<B>>();
    entry->info.name = text;
    return entry;
  };
  static const auto rebatch = named("rebatch");
  static const auto join = named("join");
  return name == "rebatch" ? *rebatch : *join;
}

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

/// The type of Action's parameter I that a pipeline supplies; void when the action's parameter
/// types are unknown (overloaded or a template) or it has fewer.
template <class B, class Action, std::size_t I>
struct parameter_at {
  using type = void;
};
template <class B, class Action, std::size_t I>
requires nameable_action<B, Action> &&
    (I < std::tuple_size_v<typename pipeline_parameters<B, Action>::type>)struct parameter_at<B, Action, I> {
  using type = std::tuple_element_t<I, typename pipeline_parameters<B, Action>::type>;
};
template <class B, class Action, std::size_t I>
using parameter_t = typename parameter_at<B, Action, I>::type;

template <class Param>
inline constexpr bool is_mutable_reference =
    std::is_lvalue_reference_v<Param> && !std::is_const_v<std::remove_reference_t<Param>>;

/// How a pipeline keeps an argument bound to parameter type Param (void: unknown): a non-const
/// reference parameter keeps a reference to the caller's object, an expression is kept to be
/// evaluated for each batch, anything else is a converted copy.
template <class B, class Param, class Arg>
auto store_argument(Arg&& arg) {
  using Value = std::remove_cvref_t<Param>;
  if constexpr (expression<Arg>) {
    using E = std::remove_cvref_t<Arg>;
    static_assert(!is_mutable_reference<Param>,
                  "an expression's value is made for each batch: pass it to a parameter taken by "
                  "value or by const reference");
    if constexpr (std::is_void_v<Param>) {
      static_assert(typed_expression<E>,
                    "this action is overloaded or a template, so an expression must say its type: "
                    "write B<T>(...), V<T>(...) or C<T>(...)");
    } else if constexpr (typed_expression<E>) {
      static_assert(std::is_convertible_v<typename expression_result<E, Value, B>::type, Value>,
                    "the expression's type does not convert to the type of the action's parameter");
    }
    return E(std::forward<Arg>(arg));
  } else if constexpr (std::is_void_v<Param>) {
    return std::decay_t<Arg>(std::forward<Arg>(arg));
  } else if constexpr (is_reference_wrapper<std::remove_cvref_t<Arg>>::value) {
    return arg;
  } else if constexpr (is_mutable_reference<Param>) {
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
    static_assert(sizeof...(A) <= std::tuple_size_v<typename pipeline_parameters<B, Action>::type>,
                  "too many arguments for this action");
  }
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple<decltype(store_argument<B, parameter_t<B, Action, I>>(std::forward<A>(args)))...>(
        store_argument<B, parameter_t<B, Action, I>>(std::forward<A>(args))...);
  }
  (std::index_sequence_for<A...>{});
}

/// "parameter 'std' (2 of 2, float)": a parameter as errors name it.
inline std::string describe_parameter(const ActionInfo& action, std::size_t i) {
  std::string text = "parameter ";
  text += i < action.parameter_names.size()
              ? "'" + action.parameter_names[i] + "' (" + std::to_string(i + 1) + " "
              : std::to_string(i + 1) + " (";
  text += "of " + std::to_string(action.parameters.size());
  if (i < action.parameters.size()) text += ", " + action.parameters[i];
  return text + ")";
}

/// A stored argument as the action receives it: an expression evaluated for this batch (an error
/// names the parameter, the expression and what went wrong), anything else as stored.
template <class Param, class B, class S>
decltype(auto) resolve_argument(const S& stored, B& batch, const ActionInfo& action, std::size_t i) {
  if constexpr (expression<S>) {
    try {
      return stored.template evaluate<std::remove_cvref_t<Param>>(batch);
    } catch (...) {
      std::throw_with_nested(
          Error(describe_parameter(action, i) + " = " + stored.text() + ": " + current_exception_message()));
    }
  } else {
    return unwrap_argument(stored);
  }
}

template <class B, class Action, std::size_t I, class S>
using resolved_t = decltype(resolve_argument<parameter_t<B, Action, I>>(
    std::declval<const S&>(), std::declval<B&>(), std::declval<const ActionInfo&>(), I));

/// Puts the batch an action returned in place of the old one. A returned batch without an
/// index (made from scratch) takes the old batch's items; number, epoch and random stream carry on.
template <class B>
void adopt_batch(B& batch, B&& result) {
  if (&batch == &result) return;
  if (result.size() == 0 && batch.size() != 0) access::index(result) = access::index(batch);
  access::number(result) = access::number(batch);
  access::epoch(result) = access::epoch(batch);
  access::random(result) = access::random(batch);
  access::context(result) = access::context(batch);
  batch = std::move(result);
}

/// The model `name` as the batch's pipeline decides: its own instance if it holds one, else the
/// class's.
template <class B, class Model>
std::shared_ptr<Model> model_for(B& batch, std::string_view name) {
  if (const RunContextPtr& context = access::context(batch)) {
    if (auto found = context->models.find(name); found != context->models.end()) {
      return found->second.template get<Model>();
    }
  }
  return B::models().template get<Model>(name);
}

/// Calls Action on the batch with its model (if any) and the stored arguments resolved for this
/// batch, under the singleton lock when the action is a singleton.
template <class B, class Action, class... S>
void run_action(B& batch, const ActionEntry<B>& entry, const std::tuple<S...>& stored) {
  // What the action before left deferred is made first, unless this action folds it into its own
  // pass: an action's reads, from any of its threads, then only read.
  if constexpr (!access::reads_deferred<B, Action>()) access::settle_components(batch);
  std::unique_lock<std::mutex> lock(entry.singleton_mutex, std::defer_lock);
  if constexpr (Action::options.singleton) lock.lock();
  auto call = [&](auto&... model) -> decltype(auto) {
    return [&]<std::size_t... I>(std::index_sequence<I...>)->decltype(auto) {
      // A braced list evaluates left to right: R(...) arguments draw in parameter order.
      std::tuple<resolved_t<B, Action, I, S>...> args{
          resolve_argument<parameter_t<B, Action, I>>(std::get<I>(stored), batch, entry.info, I)...};
      return Action::template invoke<B>(batch, model...,
                                        std::forward<resolved_t<B, Action, I, S>>(std::get<I>(args))...);
    }
    (std::index_sequence_for<S...>{});
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
    std::shared_ptr<Model> model = model_for<B, Model>(batch, Action::options.model);
    finish(*model);
  } else {
    finish();
  }
}

/// True when Action accepts its model (if any) and the stored arguments, resolved.
template <class B, class Action, class Stored>
constexpr bool accepts_arguments() {
  return []<class... S>(std::tuple<S...>*) {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      if constexpr (uses_model<B, Action>) {
        using Model = model_type_t<B, typename action_model<B, Action>::descriptor>;
        return Action::template invocable<B, Model&, resolved_t<B, Action, I, S>...>;
      } else {
        return Action::template invocable<B, resolved_t<B, Action, I, S>...>;
      }
    }
    (std::index_sequence_for<S...>{});
  }(static_cast<Stored*>(nullptr));
}

/// Checks at compile time that Action accepts its model (if any) and the stored arguments.
template <class B, class Action, class Stored>
constexpr void check_binding() {
  if constexpr (uses_model<B, Action>) {
    static_assert(accepts_arguments<B, Action, Stored>(),
                  "this ACTION cannot be called with its model's descriptor (by reference, "
                  "first) and these arguments: check the first parameter's type and the "
                  "arguments' types");
  } else {
    static_assert(accepts_arguments<B, Action, Stored>(),
                  "this ACTION cannot be called with these arguments: check their number and types");
  }
}

template <class B, class Action>
const ActionEntry<B>& entry_of();

/// Binds stored arguments to Action: the step a pipeline keeps.
template <class B, class Action, class Stored>
StepPtr<B> make_step(Stored stored) {
  check_binding<B, Action, Stored>();
  const ActionEntry<B>& entry = entry_of<B, Action>();
  auto apply = [stored = std::move(stored), &entry](B& batch) {
    run_action<B, Action>(batch, entry, stored);
  };
  return std::make_shared<const Step<B>>(Step<B>{&entry, std::move(apply)});
}

template <class B, class Action>
ActionInfo describe_action() {
  ActionInfo info;
  info.name = std::string(Action::label);
  info.model = std::string(Action::options.model);
  info.singleton = Action::options.singleton;
  info.probability = Action::options.probability;
  static_assert(valid_parameter_list(Action::options.params),
                "ACTION(..., .params = \"...\"): write the names as identifiers, each once, "
                "separated by commas, each with an optional '= default' in JSON");
  if constexpr (nameable_action<B, Action>) {
    using Params = typename pipeline_parameters<B, Action>::type;
    static_assert(Action::options.params.empty() ||
                      count_parameters(Action::options.params) == std::tuple_size_v<Params>,
                  "ACTION(..., .params = \"...\") names a different number of parameters than the "
                  "action takes (after its model)");
    [&]<class... P>(std::tuple<P...>*) {
      (info.parameters.push_back(type_name<P>() + (std::is_lvalue_reference_v<P> ? "&" : "")), ...);
    }(static_cast<Params*>(nullptr));
    info.callable_by_name = true;
  } else {
    static_assert(Action::options.params.empty(),
                  "ACTION(..., .params = \"...\"): an overloaded or template action cannot name its "
                  "parameters");
  }
  for (auto& parameter : split_parameters(Action::options.params)) {
    info.parameter_names.push_back(std::move(parameter.name));
    info.parameter_defaults.push_back(std::move(parameter.default_json));
  }
  return info;
}

}  // namespace batchpipe::detail
