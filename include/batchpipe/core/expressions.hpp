#pragma once
/// @file expressions.hpp
/// @brief Named expressions: action arguments evaluated for each batch when the action runs. A
/// batch component `B("images")`, a pipeline variable `V("loss")`, a config value `C("lr")`, a
/// function of the batch `F(callable)`, a random draw from the batch's stream `R(distribution)`,
/// the batch's `ids()` and `positions()`.

#include <batchpipe/core/config.hpp>
#include <batchpipe/core/index.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <concepts>
#include <cstddef>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace batchpipe {

namespace detail {

/// The base of every named expression: what the action machinery recognises.
struct expression_base {};

/// T when the expression says its type, else Want: the type of the parameter it is passed to.
template <class T, class Want>
using expression_value_t = std::conditional_t<std::is_void_v<T>, Want, T>;

/// Types a config value can be read as (Config::get).
template <class T>
inline constexpr bool config_readable =
    std::is_arithmetic_v<T> || std::is_same_v<T, std::string> || std::is_same_v<T, Config>;
template <class T>
inline constexpr bool config_readable<std::vector<T>> =
    std::is_arithmetic_v<T> || std::is_same_v<T, std::string>;

/// A batch component, copied: `B("images")`, `B<at::Tensor>("images")`.
template <class T>
struct component_expression : expression_base {
  using value_type = T;
  std::string name;
  template <class Want, class Batch>
  expression_value_t<T, Want> evaluate(Batch& batch) const {
    return batch.template get<expression_value_t<T, Want>>(name);
  }
  std::string text() const { return "B(\"" + name + "\")"; }
};

/// A pipeline variable's value now: `V("threshold")`.
template <class T>
struct variable_expression : expression_base {
  using value_type = T;
  std::string name;
  template <class Want, class Batch>
  expression_value_t<T, Want> evaluate(Batch& batch) const {
    return batch.template variable<expression_value_t<T, Want>>(name).value();
  }
  std::string text() const { return "V(\"" + name + "\")"; }
};

/// Types a config's value can be given as: what Config::get reads, and types made from a string
/// (a path, a device).
template <class T>
inline constexpr bool config_givable = config_readable<T> || std::is_constructible_v<T, std::string>;

/// The value at `path` of `config` as a Value (config_givable): the one reading of a setting as
/// a parameter's type, for `C(...)` and a config's named arguments alike.
template <class Value>
Value read_config_value(const Config& config, std::string_view path) {
  if constexpr (config_readable<Value>) {
    return config.template get<Value>(path);
  } else if constexpr (std::is_constructible_v<Value, std::string>) {
    return Value(config.template get<std::string>(path));
  } else {
    throw Error("a config value cannot be read as " + type_name<Value>() +
                " (numbers, bool, strings, vectors of them, Config and types made from a string can)");
  }
}

/// A value of the config the pipeline carries: `C("augment.angle")`.
template <class T>
struct config_expression : expression_base {
  using value_type = T;
  std::string path;
  template <class Want, class Batch>
  expression_value_t<T, Want> evaluate(Batch& batch) const {
    return read_config_value<expression_value_t<T, Want>>(batch.config(), path);
  }
  std::string text() const { return "C(\"" + path + "\")"; }
};

/// What a callable returns for the batch: `F([](const MyBatch& b) { return b.size() / 2; })`.
template <class Fn>
struct function_expression : expression_base {
  using value_type = Fn;  // the result type depends on the batch class: see expression_result
  Fn function;
  template <class Want, class Batch>
  auto evaluate(Batch& batch) const {
    return std::invoke(function, std::as_const(batch));
  }
  std::string text() const { return "F(" + type_name<Fn>() + ")"; }
};

/// A draw from the batch's random stream: one value, or (PerItem) one per item in a std::vector.
template <class Distribution, bool PerItem = false>
struct random_expression : expression_base {
  using draw_type = typename Distribution::result_type;
  using value_type = std::conditional_t<PerItem, std::vector<draw_type>, draw_type>;
  Distribution distribution;

  /// One draw per item of the batch: a std::vector as long as the batch.
  [[nodiscard]] random_expression<Distribution, true> per_item() const {
    random_expression<Distribution, true> result;
    result.distribution = distribution;
    return result;
  }

  template <class Want, class Batch>
  value_type evaluate(Batch& batch) const {
    // A copy per evaluation: a distribution may keep state between draws (normal keeps a second
    // value), and the same batch must draw the same values whichever thread evaluates it.
    Distribution fresh = distribution;
    if constexpr (PerItem) {
      std::vector<draw_type> values(batch.size());
      for (auto& value : values) value = fresh(batch.random());
      return values;
    } else {
      return fresh(batch.random());
    }
  }
  std::string text() const { return "R(" + type_name<Distribution>() + (PerItem ? ").per_item()" : ")"); }
};

/// The batch's item ids.
struct ids_expression : expression_base {
  using value_type = std::vector<Id>;
  template <class Want, class Batch>
  std::vector<Id> evaluate(Batch& batch) const {
    return batch.index().ids();
  }
  std::string text() const { return "ids()"; }
};

/// The batch's items' positions (rows) in the dataset.
struct positions_expression : expression_base {
  using value_type = std::vector<std::size_t>;
  template <class Want, class Batch>
  std::vector<std::size_t> evaluate(Batch& batch) const {
    std::vector<std::size_t> rows(batch.size());
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = batch.index().source(i);
    return rows;
  }
  std::string text() const { return "positions()"; }
};

template <class E>
concept expression = std::derived_from<std::remove_cvref_t<E>, expression_base>;

/// What expression E gives when passed to a parameter of type Want (void: unknown) in batch
/// class Batch; void when it cannot say (an untyped expression for an unknown parameter).
template <class E, class Want, class Batch>
struct expression_result {
  using type = void;
};
template <class E, class Want, class Batch>
requires requires(const E& e, Batch& b) { e.template evaluate<Want>(b); }
struct expression_result<E, Want, Batch> {
  using type = decltype(std::declval<const E&>().template evaluate<Want>(std::declval<Batch&>()));
};

/// True when E says its own type (B<T>, V<T>, C<T>, F, R, ids, positions).
template <class E>
inline constexpr bool typed_expression = !std::is_void_v<typename E::value_type>;

}  // namespace detail

/// @brief The batch's component `name`, copied when the action runs: `B("images")` takes the
/// type of the action's parameter (checked when the batch runs), `B<at::Tensor>("images")` is
/// checked against it at compile time.
template <class T = void>
detail::component_expression<T> B(std::string name) {
  detail::component_expression<T> expression;
  expression.name = std::move(name);
  return expression;
}

/// @brief The value of pipeline variable `name` when the action runs (see Variables).
template <class T = void>
detail::variable_expression<T> V(std::string name) {
  detail::variable_expression<T> expression;
  expression.name = std::move(name);
  return expression;
}

/// @brief The value at `path` of the config the pipeline carries (Pipeline::with_config), read
/// as the parameter's type (`C`) or as T (`C<T>`), strictly as Config::get reads.
template <class T = void>
detail::config_expression<T> C(std::string path) {
  static_assert(std::is_void_v<T> || detail::config_readable<T> || std::is_constructible_v<T, std::string>,
                "C<T>: a config value is read as a number, bool, string, vector of them, Config, or a type "
                "made from a string");
  detail::config_expression<T> expression;
  expression.path = std::move(path);
  return expression;
}

/// @brief What `function(batch)` returns, called with the batch (const) when the action runs.
template <class Fn>
detail::function_expression<std::decay_t<Fn>> F(Fn&& function) {
  detail::function_expression<std::decay_t<Fn>> expression;
  expression.function = std::forward<Fn>(function);
  return expression;
}

/// @brief A draw of `distribution` from the batch's own random stream (so the same seed gives
/// the same draws at any prefetch and thread count): `R(std::normal_distribution<float>(0, 1))`;
/// `.per_item()` draws one value per item.
template <class Distribution>
detail::random_expression<Distribution> R(Distribution distribution) {
  detail::random_expression<Distribution> expression;
  expression.distribution = std::move(distribution);
  return expression;
}

/// @brief `R<std::uniform_real_distribution>(0.5f, 1.5f)`: the distribution template made with
/// the arguments' common type.
template <template <class> class Distribution, class... A>
auto R(A... args) {
  return R(Distribution<std::common_type_t<A...>>(args...));
}

/// @brief The batch's item ids, as a std::vector<Id>.
inline detail::ids_expression ids() { return {}; }

/// @brief The batch's items' positions in the dataset (their source rows), as a
/// std::vector<std::size_t>.
inline detail::positions_expression positions() { return {}; }

}  // namespace batchpipe
