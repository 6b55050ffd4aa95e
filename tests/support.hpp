// Helpers shared by the test files.
#pragma once

#include "catch_compat.hpp"

#include <batchpipe/batchpipe.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <string>

namespace test {

/// Runs f on another thread and fails the test (instead of hanging it) when f does not finish
/// within `limit`: how the tests check that nothing deadlocks.
inline void finishes_within(std::chrono::seconds limit, const std::function<void()>& f) {
  auto done = std::async(std::launch::async, f);
  REQUIRE(done.wait_for(limit) == std::future_status::ready);
  done.get();
}

/// Records the highest value a counter reaches while scopes are open.
struct ConcurrencyProbe {
  std::atomic<int> now{0};
  std::atomic<int> highest{0};
  struct Scope {
    ConcurrencyProbe& probe;
    explicit Scope(ConcurrencyProbe& p) : probe(p) {
      const int value = ++probe.now;
      int seen = probe.highest.load();
      while (value > seen && !probe.highest.compare_exchange_weak(seen, value)) {}
    }
    ~Scope() { --probe.now; }
  };
};

/// The message of an exception and of everything nested in it, outermost first.
inline std::string full_message(const std::exception& e) {
  std::string message = e.what();
  try {
    std::rethrow_if_nested(e);
  } catch (const std::exception& inner) {
    message += " | " + full_message(inner);
  } catch (...) {
    message += " | unknown";
  }
  return message;
}

}  // namespace test
