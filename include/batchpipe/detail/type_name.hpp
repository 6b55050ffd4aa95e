#pragma once
// Human-readable type names for error messages.

#include <c10/util/Type.h>

#include <string>
#include <string_view>
#include <typeindex>
#include <typeinfo>

namespace batchpipe::detail {

/// A demangled name with the standard library's long spellings of strings shortened.
inline std::string type_name_shortened(std::string name) {
  for (const std::string_view long_name :
       {"std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
        "std::basic_string<char, std::char_traits<char>, std::allocator<char> >"}) {
    for (auto at = name.find(long_name); at != std::string::npos; at = name.find(long_name, at)) {
      name.replace(at, long_name.size(), "std::string");
    }
  }
  return name;
}

inline std::string type_name(const std::type_info& type) {
  return type_name_shortened(c10::demangle(type.name()));
}

inline std::string type_name(const std::type_index& type) {
  std::string name = c10::demangle(type.name());
  return type_name_shortened(std::move(name));
}

/// The name of T, as it appears in error messages.
template <class T>
std::string type_name() {
  return type_name(typeid(T));
}

}  // namespace batchpipe::detail
