#pragma once
/// @file error.hpp
/// @brief The exceptions batchpipe throws: Error, and its kinds ActionError and FileError.

#include <c10/util/Exception.h>

#include <cstddef>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>

namespace batchpipe {

/// @brief Any error batchpipe reports about its own use: bad input, unknown names, bad options.
///
/// Every exception batchpipe throws derives from it, so one `catch (const bp::Error&)` takes them
/// all.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief An exception escaped an action while a pipeline processed a batch.
///
/// It names the batch class, the action, the batch number (counted from 0 across epochs) and the
/// epoch. The original exception is nested: `std::rethrow_if_nested(e)` rethrows it, and
/// `what()` already ends with its message (for a LibTorch error, its one-line message without
/// LibTorch's stack trace).
///
/// @code
/// try {
///   pipeline.run({.batch_size = 64});
/// } catch (const bp::ActionError& e) {
///   std::cerr << e.what() << '\n';   // action 'train' of MyBatch failed on batch 3 (epoch 0): ...
///   std::rethrow_if_nested(e);       // the action's own exception
/// }
/// @endcode
class ActionError : public Error {
 public:
  /// An error of `action` (of `batch_class`) on batch `batch_number` of epoch `epoch`.
  ActionError(std::string batch_class, std::string action, std::size_t batch_number, std::size_t epoch,
              const std::string& reason)
      : Error("action '" + action + "' of " + batch_class + " failed on batch " +
              std::to_string(batch_number) + " (epoch " + std::to_string(epoch) + "): " + reason),
        batch_class_(std::move(batch_class)),
        action_(std::move(action)),
        batch_number_(batch_number),
        epoch_(epoch) {}

  /// The batch class's name, as C++ spells it.
  const std::string& batch_class() const noexcept { return batch_class_; }
  /// The action's name; "<create batch>" when making the batch itself failed.
  const std::string& action() const noexcept { return action_; }
  /// The failing batch's number in its run, counted from 0 across epochs.
  std::size_t batch_number() const noexcept { return batch_number_; }
  /// The epoch of the failing batch.
  std::size_t epoch() const noexcept { return epoch_; }

 private:
  std::string batch_class_;
  std::string action_;
  std::size_t batch_number_;
  std::size_t epoch_;
};

/// @brief A file could not be read or written: missing, truncated, malformed, mismatched.
///
/// @code
/// try {
///   auto images = bp::io::read_idx("train-images-idx3-ubyte.gz");
/// } catch (const bp::FileError& e) {
///   std::cerr << e.file() << ": " << e.what() << '\n';
/// }
/// @endcode
class FileError : public Error {
 public:
  /// An error about `file`: the message is the file's name, then `problem`.
  FileError(const std::filesystem::path& file, const std::string& problem)
      : Error(file.string() + ": " + problem), file_(file) {}
  /// The file the error is about.
  const std::filesystem::path& file() const noexcept { return file_; }

 private:
  std::filesystem::path file_;
};

/// @brief The message of an exception as users should read it: a LibTorch error (`c10::Error`)
/// without the C++ stack trace that LibTorch appends to its what(), any other exception's what().
///
/// Use it, never what(), to put a caught exception's message into another (a bp::Error's): once a
/// c10::Error's what() is copied into a message, nothing can tell its trace from the message.
///
/// @code
/// } catch (const std::exception& e) {
///   std::cerr << "my_program: " << bp::error_message(e) << '\n';
/// }
/// @endcode
inline std::string error_message(const std::exception& e) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e))
    return torch_error->what_without_backtrace();
  return e.what();
}

namespace detail {

/// The message of the exception being handled, whatever its type (see error_message).
inline std::string current_exception_message() {
  try {
    throw;
  } catch (const std::exception& e) {
    return error_message(e);
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace detail
}  // namespace batchpipe
