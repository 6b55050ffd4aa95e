#pragma once
// One rule for turning a number given at run time into a parameter's arithmetic type, shared by
// calls by name (std::any) and configs (JSON): the value must arrive unchanged. A static_cast
// would turn 2.9 into 2, wrap -1 into a size_t and, for a double beyond an int's range or NaN,
// be undefined behaviour.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace batchpipe::detail {

/// `value` as T when T holds it exactly (a float parameter takes any finite double within
/// float's range, rounded; NaN and infinities stay themselves); nothing otherwise. A bool is
/// only ever a bool.
template <class T, class From>
std::optional<T> exact_number(From value) {
  static_assert(std::is_arithmetic_v<T> && std::is_arithmetic_v<From>);
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<From, bool>) {
    if constexpr (std::is_same_v<T, From>) return value;
    return std::nullopt;
  } else if constexpr (std::is_integral_v<T> && std::is_integral_v<From>) {
    // Through the widest types: std::in_range refuses char, which calls by name may hold.
    constexpr auto max = static_cast<std::uintmax_t>(std::numeric_limits<T>::max());
    if (value < From(0)) {
      if (!std::is_signed_v<T> ||
          static_cast<std::intmax_t>(value) < static_cast<std::intmax_t>(std::numeric_limits<T>::lowest()))
        return std::nullopt;
    } else if (static_cast<std::uintmax_t>(value) > max) {
      return std::nullopt;
    }
    return static_cast<T>(value);
  } else if constexpr (std::is_integral_v<T>) {  // from a floating-point number
    // T's bounds as powers of two, exact in every floating-point type: [-2^digits, 2^digits).
    const From limit = std::ldexp(From(1), std::numeric_limits<T>::digits);
    const From lowest = std::is_signed_v<T> ? -limit : From(0);
    if (!(value >= lowest && value < limit) || std::trunc(value) != value) return std::nullopt;
    return static_cast<T>(value);
  } else {  // to a floating-point number
    if constexpr (std::is_floating_point_v<From> && sizeof(From) > sizeof(T)) {
      if (std::isfinite(value) && std::abs(value) > std::numeric_limits<T>::max()) return std::nullopt;
    }
    return static_cast<T>(value);
  }
}

/// What exact_number refuses, for an error message: "a whole number from ... to ...", etc.
template <class T>
std::string exact_number_expectation() {
  // Appended, not "..." + std::to_string(...): g++ 12 warns falsely (-Warray-bounds) on that.
  std::string text;
  if constexpr (std::is_same_v<T, bool>) {
    text = "true or false";
  } else if constexpr (std::is_integral_v<T>) {
    text = "a whole number from ";
    text += std::to_string(std::numeric_limits<T>::lowest());
    text += " to ";
    text += std::to_string(std::numeric_limits<T>::max());
  } else {
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g", static_cast<double>(std::numeric_limits<T>::max()));
    text = "a number within +-";
    text += limit;
  }
  return text;
}

}  // namespace batchpipe::detail
