// Catch2 v2 (Debian 12: one header) and v3 (Debian 13 and most current systems: a compiled
// library with many headers) under one spelling, so the tests build against either.
#pragma once

// LibTorch's logging header defines a CHECK macro of its own. Included first here, so that
// Catch's CHECK, defined next, is the one the tests see whatever the order of their includes.
#include <c10/util/Logging.h>

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#define BATCHPIPE_TEST_CATCH2_V3 1
#else
#include <catch2/catch.hpp>
#endif

#include <string>

namespace test {

/// Matches a message that contains `text`.
inline auto contains(const std::string& text) {
#ifdef BATCHPIPE_TEST_CATCH2_V3
  return Catch::Matchers::ContainsSubstring(text);
#else
  return Catch::Matchers::Contains(text);
#endif
}

#ifdef BATCHPIPE_TEST_CATCH2_V3
using Catch::Approx;
#else
using Catch::Detail::Approx;
#endif

}  // namespace test
