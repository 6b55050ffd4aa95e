#pragma once
// Human-readable type names for error messages.

#include <c10/util/Type.h>

#include <string>
#include <typeinfo>

namespace batchpipe::detail {

/// The demangled name of T, as it appears in error messages.
template <class T>
std::string type_name() {
  return c10::demangle(typeid(T).name());
}

inline std::string type_name(const std::type_info& type) { return c10::demangle(type.name()); }

}  // namespace batchpipe::detail
