#pragma once
// Small type traits shared by the action machinery.

#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>

namespace batchpipe::detail {

/// Parameter and result types of a pointer to member function.
template <class F>
struct member_function_traits;

#define BATCHPIPE_DETAIL_MEMBER_TRAITS(qualifiers)           \
  template <class R, class C, class... A>                    \
  struct member_function_traits<R (C::*)(A...) qualifiers> { \
    using result = R;                                        \
    using parameters = std::tuple<A...>;                     \
  };
BATCHPIPE_DETAIL_MEMBER_TRAITS()
BATCHPIPE_DETAIL_MEMBER_TRAITS(&)
BATCHPIPE_DETAIL_MEMBER_TRAITS(noexcept)
BATCHPIPE_DETAIL_MEMBER_TRAITS(&noexcept)
#undef BATCHPIPE_DETAIL_MEMBER_TRAITS

/// The tuple without its first element type.
template <class Tuple>
struct drop_first;
template <class First, class... Rest>
struct drop_first<std::tuple<First, Rest...>> {
  using type = std::tuple<Rest...>;
};

template <class T>
struct is_reference_wrapper : std::false_type {};
template <class T>
struct is_reference_wrapper<std::reference_wrapper<T>> : std::true_type {};

/// A stored pipeline argument as the action sees it: references unwrapped, everything else
/// const, because one pipeline's arguments are shared by every batch in flight.
template <class T>
decltype(auto) unwrap_argument(const T& stored) {
  if constexpr (is_reference_wrapper<T>::value) {
    return stored.get();
  } else {
    return (stored);
  }
}

/// Copying a holder copies nothing: for per-object caches (an iteration in progress) that must
/// not be shared between a value and its copies.
template <class T>
struct not_copied {
  T value{};
  not_copied() = default;
  not_copied(const not_copied&) {}
  not_copied(not_copied&&) noexcept = default;
  not_copied& operator=(const not_copied&) {
    value = T{};
    return *this;
  }
  not_copied& operator=(not_copied&&) noexcept = default;
};

}  // namespace batchpipe::detail
