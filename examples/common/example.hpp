// What the example programs share: one convention for how they end, and flags checked before
// any work starts.
//
// Exit codes: 0 the work is done (or --help was asked); 1 the work failed (a data file is
// missing, malformed or empty, an action threw); 2 the command line is wrong (an unknown flag, a value
// out of range, a folder that does not exist or cannot be written, an unknown device), found
// before any work starts (or, for --items above what the data holds, once the data is read).
// Every error is one line on stderr, prefixed by the program's name.
#pragma once

#include <batchpipe/core/error.hpp>

#include <c10/core/Device.h>
#include <torch/cuda.h>
#if __has_include(<CLI/CLI.hpp>)
#include <CLI/CLI.hpp>
#endif

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace example {

inline constexpr int exit_success = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;

/// A flag with a value the program cannot use: exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Runs `check` (flags: throws UsageError), then `work`; prints an error as one line and returns
/// the exit code. A UsageError from `work` is still exit code 2: a flag that only the data, once
/// read, shows to be wrong (--items above what it holds).
template <class Check, class Work>
int run(const std::string& program, Check&& check, Work&& work) {
  const auto report = [&](const std::exception& e, int code) {
    std::cerr << program << ": " << batchpipe::error_message(e) << '\n';
    return code;
  };
  try {
    check();
  } catch (const std::exception& e) {
    return report(e, exit_usage);
  }
  try {
    work();
  } catch (const UsageError& e) {
    return report(e, exit_usage);
  } catch (const std::exception& e) {
    return report(e, exit_failure);
  }
  return exit_success;
}

/// A whole number in [min, max] from a flag's text; "-1", "3x" or "1e99" are usage errors.
inline std::size_t parse_count(const std::string& flag, const std::string& text, std::size_t min,
                               std::size_t max) {
  std::size_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    throw UsageError(flag + " must be a whole number from " + std::to_string(min) + " to " +
                     std::to_string(max) + ", got '" + text + "'");
  }
  return value;
}

/// The device a flag names ("cpu", "cuda", "cuda:1"), checked to exist on this machine.
inline c10::Device parse_device(const std::string& text) {
  std::optional<c10::Device> device;
  try {
    device.emplace(text);
  } catch (const std::exception&) {
    throw UsageError("--device: unknown device '" + text + "' (cpu, cuda, cuda:N)");
  }
  if (device->is_cuda()) {
    const auto available = torch::cuda::device_count();
    if (available == 0) throw UsageError("--device " + text + ": no CUDA device is available here");
    if (device->has_index() && static_cast<std::size_t>(device->index()) >= available) {
      throw UsageError("--device " + text + ": this machine has " + std::to_string(available) +
                       " CUDA device(s)");
    }
  } else if (!device->is_cpu()) {
    throw UsageError("--device " + text + ": only cpu and cuda are supported");
  }
  return *device;
}

/// A folder that must exist and hold `files`.
inline void check_data_folder(const std::filesystem::path& folder, const std::vector<std::string>& files) {
  if (!std::filesystem::is_directory(folder)) {
    throw UsageError("--data " + folder.string() + ": no such folder");
  }
  for (const auto& file : files) {
    if (!std::filesystem::exists(folder / file)) {
      throw UsageError("--data " + folder.string() + ": no " + file + " in it");
    }
  }
}

/// A file the program will write at the end: its folder must exist and take a new file now (one
/// is created there and removed), so that hours of work are not lost to a typo or a permission.
inline void check_output_file(const std::string& flag, const std::filesystem::path& file) {
  if (file.empty()) return;
  namespace fs = std::filesystem;
  const auto folder = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (!fs::is_directory(folder)) {
    throw UsageError(flag + " " + file.string() + ": the folder " + folder.string() + " does not exist");
  }
  if (fs::is_directory(file)) throw UsageError(flag + " " + file.string() + " is a folder");
  // A checkpoint is written beside its name and renamed over it: the folder is what must be writable.
  const auto probe =
      folder / ("." + file.filename().string() + ".probe-" + std::to_string(std::random_device{}()));
  if (!std::ofstream(probe)) {
    throw UsageError(flag + " " + file.string() + ": cannot write in the folder " + folder.string());
  }
  std::error_code ignored;
  fs::remove(probe, ignored);
}

/// `flag` asks for `items` items of data that holds `available`: found once the data is read, a
/// UsageError rather than LibTorch's message about a slice out of range.
inline void check_items(const std::string& flag, std::size_t items, std::int64_t available) {
  if (items > static_cast<std::size_t>(available)) {
    throw UsageError(flag + " " + std::to_string(items) + ": the data holds only " +
                     std::to_string(available) + " items");
  }
}

#if __has_include(<CLI/CLI.hpp>)
/// Parses the command line with CLI11; an exit code when the program must stop now (--help: 0,
/// a parse error: 2, each printed by CLI11), nothing when it goes on.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? exit_success : exit_usage;
  }
}
#endif

}  // namespace example
