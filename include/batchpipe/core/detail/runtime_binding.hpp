#pragma once
// Actions bound at run time: by name with positional arguments in std::any (Pipeline::append), or
// with named arguments read from a config (Pipeline::from_config). Every argument is checked
// against the action's parameter type when the pipeline is built; an expression among them is
// kept and evaluated for each batch. Trailing parameters may be left out where the action has C++
// default arguments for them, any named parameter where its ACTION declares a default.

#include <batchpipe/core/action_options.hpp>
#include <batchpipe/core/config.hpp>
#include <batchpipe/core/detail/action_binding.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/expressions.hpp>
#include <batchpipe/detail/exact_number.hpp>
#include <batchpipe/detail/json_excerpt.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <algorithm>
#include <any>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// An argument bound at run time to a parameter of type Value: a constant, or an expression
/// evaluated for each batch. It is itself an expression, typed Value.
template <class Value, class B>
class dynamic_argument : public expression_base {
 public:
  using value_type = Value;

  explicit dynamic_argument(Value constant) : constant_(std::move(constant)) {}

  template <class E>
  static dynamic_argument of(E expression) {
    dynamic_argument result;
    result.text_ = expression.text();
    result.expression_ = [expression = std::move(expression)](B& batch) -> Value {
      return Value(expression.template evaluate<Value>(batch));
    };
    return result;
  }

  template <class Want>
  Value evaluate(B& batch) const {
    return expression_ ? expression_(batch) : *constant_;
  }
  std::string text() const { return expression_ ? text_ : "a constant"; }

 private:
  dynamic_argument() = default;
  std::optional<Value> constant_;
  std::function<Value(B&)> expression_;
  std::string text_;
};

/// How a run-time argument for Param is kept: a reference to the caller's object for a non-const
/// reference parameter, else a dynamic_argument.
template <class Param, class B>
using runtime_stored_t =
    std::conditional_t<is_mutable_reference<Param>, std::reference_wrapper<std::remove_reference_t<Param>>,
                       dynamic_argument<std::remove_cvref_t<Param>, B>>;

/// Sets `result` to E wrapped as a dynamic argument when `value` holds an E whose value converts
/// to Value.
template <class E, class Value, class B>
void take_expression(const std::any& value, std::optional<dynamic_argument<Value, B>>& result) {
  if constexpr (std::is_constructible_v<Value, typename expression_result<E, Value, B>::type>) {
    if (const E* expression = std::any_cast<E>(&value); expression && !result) {
      result = dynamic_argument<Value, B>::of(*expression);
    }
  }
}

/// The expressions a std::any may hold for a parameter of type Value.
template <class Value, class B>
std::optional<dynamic_argument<Value, B>> expression_from_any(const std::any& value) {
  std::optional<dynamic_argument<Value, B>> result;
  [&]<class... E>(std::tuple<E...>*) {
    (take_expression<E, Value, B>(value, result), ...);
  }(static_cast<std::tuple<component_expression<void>, component_expression<Value>, variable_expression<void>,
                           variable_expression<Value>, config_expression<void>, config_expression<Value>,
                           ids_expression, positions_expression>*>(nullptr));
  if constexpr (std::is_floating_point_v<Value>) {
    take_expression<random_expression<std::uniform_real_distribution<Value>>, Value, B>(value, result);
    take_expression<random_expression<std::normal_distribution<Value>>, Value, B>(value, result);
  }
  return result;
}

/// The arithmetic types a call by name may pass a number as.
using any_arithmetic_types =
    std::tuple<bool, char, signed char, unsigned char, short, unsigned short, int, unsigned, long,
               unsigned long, long long, unsigned long long, float, double, long double>;

/// The number a std::any holds, as text for an error ("1e+300 (double)").
inline std::string describe_number(const std::any& value) {
  std::ostringstream text;
  text.precision(17);
  [&]<class... N>(std::tuple<N...>*) {
    ((std::any_cast<N>(&value) ? void(text << +*std::any_cast<N>(&value)) : void()), ...);
  }(static_cast<any_arithmetic_types*>(nullptr));
  return text.str() + " (" + type_name(value.type()) + ")";
}

/// A run-time value converted to T: exact type, or any arithmetic type to an arithmetic T that
/// holds its value (exact_number, the rule configs follow), or a C string to std::string.
template <class T>
T value_from_any(const std::any& value, const ActionInfo& action, std::size_t i) {
  if (const T* exact = std::any_cast<T>(&value)) return *exact;
  if constexpr (std::is_arithmetic_v<T>) {
    bool arithmetic = false;
    std::optional<T> converted;
    [&]<class... N>(std::tuple<N...>*) {
      ((arithmetic || !std::any_cast<N>(&value)
            ? void()
            : void((arithmetic = true, converted = exact_number<T>(*std::any_cast<N>(&value))))),
       ...);
    }(static_cast<any_arithmetic_types*>(nullptr));
    if (converted) return *converted;
    if (arithmetic) {
      throw Error("action '" + action.name + "': " + describe_parameter(action, i) + " must be " +
                  exact_number_expectation<T>() + " (" + type_name<T>() + "), got " + describe_number(value));
    }
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (const auto* text = std::any_cast<const char*>(&value)) return std::string(*text);
  }
  throw Error("action '" + action.name + "': " + describe_parameter(action, i) + " must be " +
              type_name<T>() + ", got " +
              (value.has_value() ? type_name(value.type()) : std::string("nothing")));
}

template <class Param, class B>
runtime_stored_t<Param, B> argument_from_any(const std::any& value, const ActionInfo& action, std::size_t i) {
  using Value = std::remove_cvref_t<Param>;
  if constexpr (is_mutable_reference<Param>) {
    return value_from_any<std::reference_wrapper<Value>>(value, action, i);
  } else {
    if (auto expression = expression_from_any<Value, B>(value)) return std::move(*expression);
    return dynamic_argument<Value, B>(value_from_any<Value>(value, action, i));
  }
}

/// A config's expression object ({"B": "images"}, {"V": ...}, {"C": ...}, {"R": ["normal", 0, 1]})
/// as a dynamic argument; nothing when `value` is not one.
template <class Value, class B>
std::optional<dynamic_argument<Value, B>> expression_from_json(const Config::json& value,
                                                               const std::string& where) {
  if (!value.is_object() || value.size() != 1) return std::nullopt;
  const std::string key = value.begin().key();
  const Config::json& operand = value.begin().value();
  const auto text = [&]() {
    if (!operand.is_string()) throw Error(where + ": {\"" + key + "\": ...} takes a string");
    return operand.template get<std::string>();
  };
  using D = dynamic_argument<Value, B>;
  if (key == "B") return D::of(batchpipe::B(text()));
  if (key == "V") return D::of(batchpipe::V(text()));
  if (key == "C") return D::of(batchpipe::C(text()));
  if (key != "R") return std::nullopt;
  const bool valid = operand.is_array() && operand.size() == 3 && operand[0].is_string() &&
                     operand[1].is_number() && operand[2].is_number();
  const std::string kind = valid ? operand[0].template get<std::string>() : "";
  if (!valid || (kind != "uniform" && kind != "normal")) {
    throw Error(where + ": {\"R\": ...} takes [\"uniform\", low, high] or [\"normal\", mean, std], got " +
                json_excerpt(operand));
  }
  if constexpr (std::is_floating_point_v<Value>) {
    const double a = operand[1].template get<double>();
    const double b = operand[2].template get<double>();
    // The distributions' preconditions: breaking them is undefined behaviour, so it is an error
    // here. A uniform range must also be finite as a width (b - a), or every draw is infinite.
    if (kind == "uniform") {
      if (!(a <= b) || !std::isfinite(b - a))
        throw Error(where +
                    ": {\"R\": [\"uniform\", low, high]} needs low <= high and high - low finite, got " +
                    json_excerpt(operand));
      return D::of(batchpipe::R(std::uniform_real_distribution<double>(a, b)));
    }
    if (!(b > 0) || !std::isfinite(b))
      throw Error(where + ": {\"R\": [\"normal\", mean, std]} needs a finite std > 0, got " +
                  json_excerpt(operand));
    return D::of(batchpipe::R(std::normal_distribution<double>(a, b)));
  } else {
    throw Error(where + ": {\"R\": ...} draws real numbers, and this parameter is a " + type_name<Value>());
  }
}

template <class Param, class B>
runtime_stored_t<Param, B> argument_from_json(const Config::json& value, const ActionInfo& action,
                                              std::size_t i, const std::string& where) {
  using Value = std::remove_cvref_t<Param>;
  const std::string place = where + ": action '" + action.name + "', " + describe_parameter(action, i);
  if constexpr (is_mutable_reference<Param>) {
    throw Error(place + " is a non-const reference, which a config cannot give: bind the action in code");
  } else {
    if (auto expression = expression_from_json<Value, B>(value, place)) return std::move(*expression);
    if constexpr (config_givable<Value>) {
      const std::string& name = action.parameter_names[i];
      const Config argument(Config::json{{name, value}}, place);
      try {
        return dynamic_argument<Value, B>(read_config_value<Value>(argument, name));
      } catch (const Error&) {
        throw;         // the config's own error, which names the place
      } catch (...) {  // a constructor's (an unknown device, say)
        std::throw_with_nested(Error(place + ": " + current_exception_message()));
      }
    } else {
      throw Error(place + " is a " + type_name<Value>() +
                  ", which a config cannot give (numbers, bool, strings, vectors of them and objects can): "
                  "bind the action in code or pass an expression");
    }
  }
}

/// The step of Action with its first K parameters bound, each argument from get<I>(); null when
/// the action cannot be called with only K arguments.
template <class B, class Action, std::size_t K, class Get>
StepPtr<B> bind_prefix(Get& get) {
  return [&]<std::size_t... I>(std::index_sequence<I...>)->StepPtr<B> {
    using Stored = std::tuple<runtime_stored_t<parameter_t<B, Action, I>, B>...>;
    if constexpr (accepts_arguments<B, Action, Stored>()) {
      return make_step<B, Action>(Stored{get.template operator()<I>()...});
    } else {
      return nullptr;
    }
  }
  (std::make_index_sequence<K>{});
}

/// The step of Action with its first `count` parameters bound; null when the action needs more.
template <class B, class Action, class Get>
StepPtr<B> bind_first(std::size_t count, Get get) {
  StepPtr<B> step;
  [&]<std::size_t... K>(std::index_sequence<K...>) {
    ((count == K ? void(step = bind_prefix<B, Action, K>(get)) : void()), ...);
  }
  (std::make_index_sequence<std::tuple_size_v<typename pipeline_parameters<B, Action>::type> + 1>{});
  return step;
}

/// Binds positional run-time arguments to Action (trailing ones with C++ defaults may be left out).
template <class B, class Action>
StepPtr<B> bind_by_name(std::vector<std::any>& args) {
  const ActionInfo& info = entry_of<B, Action>().info;
  const std::size_t arity = info.parameters.size();
  auto get = [&]<std::size_t I>() {
    return argument_from_any<parameter_t<B, Action, I>, B>(args[I], info, I);
  };
  StepPtr<B> step = args.size() <= arity ? bind_first<B, Action>(args.size(), get) : nullptr;
  if (!step) {
    throw Error("action '" + info.name + "' of " + type_name<B>() + " takes " + std::to_string(arity) +
                " argument(s), got " + std::to_string(args.size()) +
                (args.size() < arity ? " (only trailing ones with C++ defaults may be left out)" : ""));
  }
  return step;
}

/// Binds named arguments read from a config object to Action: each parameter from its name, or
/// its declared default, or (trailing ones) the C++ default. `where` names the place in errors.
template <class B, class Action>
StepPtr<B> bind_by_keywords(const Config& args, const std::string& where) {
  const ActionInfo& info = entry_of<B, Action>().info;
  const auto& names = info.parameter_names;
  const std::string action = where + ": action '" + info.name + "'";
  const Config::json& given = args.to_json();
  if (names.empty() && !given.empty()) {
    throw Error(action +
                " does not name its parameters, so it takes no named arguments (declare them: "
                "ACTION(" +
                info.name + ", .params = \"...\"))");
  }
  for (const auto& item : given.items()) {
    if (std::find(names.begin(), names.end(), item.key()) == names.end()) {
      throw Error(action + " has no parameter '" + item.key() +
                  "' (parameters: " + join_names(names, [](const std::string& name) { return name; }) + ")");
    }
  }
  // The parameters bound: up to the last one given or with a declared default. Those after it
  // are left to the action's C++ default arguments.
  std::size_t count = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (given.contains(names[i]) || !info.parameter_defaults[i].empty()) count = i + 1;
  }
  auto value_of = [&](std::size_t i) -> Config::json {
    if (auto found = given.find(names[i]); found != given.end()) return *found;
    if (info.parameter_defaults[i].empty())
      throw Error(action + ": " + describe_parameter(info, i) + " is missing");
    try {
      return Config::json::parse(info.parameter_defaults[i]);
    } catch (const Config::json::exception&) {
      throw Error(action + ": the declared default of " + describe_parameter(info, i) + ", " +
                  info.parameter_defaults[i] + ", is not JSON");
    }
  };
  auto get = [&]<std::size_t I>() {
    return argument_from_json<parameter_t<B, Action, I>, B>(value_of(I), info, I, where);
  };
  StepPtr<B> step = bind_first<B, Action>(count, get);
  if (!step) {
    throw Error(action + ": " + describe_parameter(info, count) + " is missing (it has no default)");
  }
  return step;
}

}  // namespace batchpipe::detail
