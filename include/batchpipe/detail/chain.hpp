#pragma once
// The compile-time lists behind ACTION and MODEL.
//
// Each ACTION or MODEL macro declares, inside the batch class, a static member function
//   static Descriptor bp_action_chain(rank<Depth>);
// where Descriptor is a nested struct describing the entry and Depth is one more than the depth
// of the entry declared before it. Inside a class body, a declaration only sees the members
// declared above it, so `decltype(bp_action_chain(rank<max_chain_length>{}))` names the last
// entry so far (overload resolution prefers the most derived rank), and each descriptor keeps
// that as its `prev`. Once the class is complete the same expression names the last entry of the
// class, and following `prev` walks every entry in reverse order of declaration.
//
// Nothing here depends on the order in which templates are instantiated: the list is a chain of
// types fixed by the order of declarations in the class body.

#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

namespace batchpipe::detail {

/// The most ACTIONs, and separately MODELs, that one batch class can declare.
inline constexpr int max_chain_length = 255;

template <int N>
struct rank : rank<N - 1> {};
template <>
struct rank<0> {};

/// The empty end of every chain; also the base of the fluent pipeline mixins.
struct chain_root {
  static constexpr int depth = 0;
  template <class Pipeline>
  struct fluent {};
};

/// The chains' ends for batch class templates. In a class template the batch base is a
/// dependent base, so the first ACTION / MODEL of the template cannot see Batch's declarations;
/// argument-dependent lookup (on `rank`) finds these instead. Declared only: used in decltype.
chain_root bp_action_chain(rank<0>);
chain_root bp_model_chain(rank<0>);

template <class Link>
inline constexpr bool is_root = std::is_same_v<Link, chain_root>;

/// Calls f.template operator()<Descriptor>() for each entry of the chain ending at Link, in
/// order of declaration.
template <class Link, class F>
constexpr void for_each_link(F&& f) {
  if constexpr (!is_root<Link>) {
    for_each_link<typename Link::prev>(f);
    f.template operator()<Link>();
  }
}

/// The depth of the entry named `name`, or 0 when the chain has none.
template <class Link>
constexpr int find_link(std::string_view name) {
  if constexpr (is_root<Link>) {
    return 0;
  } else {
    return Link::label == name ? Link::depth : find_link<typename Link::prev>(name);
  }
}

/// The entry of the chain ending at Link whose depth is Depth.
template <class Link, int Depth>
struct link_at {
  using type = typename link_at<typename Link::prev, Depth>::type;
};
template <class Link, int Depth>
requires(Link::depth == Depth) struct link_at<Link, Depth> {
  using type = Link;
};

}  // namespace batchpipe::detail
