// Helpers shared by the test files.
#pragma once

#include "catch_compat.hpp"

#include <batchpipe/batchpipe.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <string>

namespace test {

/// A folder of its own for a test's files, removed with everything in it at the end.
struct Scratch {
  std::filesystem::path folder =
      std::filesystem::temp_directory_path() / ("batchpipe_test_" + std::to_string(::getpid()));
  Scratch() { std::filesystem::create_directories(folder); }
  ~Scratch() { std::filesystem::remove_all(folder); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return folder / name; }
};

/// Runs f on another thread and fails the test (instead of hanging it) when f does not finish
/// within `limit`: how the tests check that nothing deadlocks.
/// A hang ends the whole test program at once, with a message: the hung thread cannot be
/// joined, and waiting for it (as the future's destructor would) would hang CI instead.
inline void finishes_within(std::chrono::seconds limit, const std::function<void()>& f,
                            const std::string& what = "") {
  auto done = std::async(std::launch::async, f);
  if (done.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "\nA test did not finish within %lld s (a hang): %s %s\n",
                 static_cast<long long>(limit.count()),
                 Catch::getResultCapture().getCurrentTestName().c_str(), what.c_str());
    std::fflush(stderr);
    std::_Exit(EXIT_FAILURE);
  }
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
