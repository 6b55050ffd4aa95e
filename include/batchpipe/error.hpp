#pragma once
/// @file error.hpp
/// @brief The exceptions batchpipe throws.

#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace batchpipe {

/// @brief Any error batchpipe reports about its own use: bad input, unknown names, bad options.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief An exception escaped an action while a pipeline processed a batch.
///
/// It names the batch class, the action, the batch number (counted from 0 across epochs) and the
/// epoch. The original exception is nested: `std::rethrow_if_nested(e)` rethrows it, and
/// `what()` already ends with its message.
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
  ActionError(std::string batch_class, std::string action, std::size_t batch_number,
              std::size_t epoch, const std::string& reason)
      : Error("action '" + action + "' of " + batch_class + " failed on batch " +
              std::to_string(batch_number) + " (epoch " + std::to_string(epoch) + "): " + reason),
        batch_class_(std::move(batch_class)),
        action_(std::move(action)),
        batch_number_(batch_number),
        epoch_(epoch) {}

  const std::string& batch_class() const noexcept { return batch_class_; }
  /// The action's name; "<create batch>" when making the batch itself failed.
  const std::string& action() const noexcept { return action_; }
  std::size_t batch_number() const noexcept { return batch_number_; }
  std::size_t epoch() const noexcept { return epoch_; }

 private:
  std::string batch_class_;
  std::string action_;
  std::size_t batch_number_;
  std::size_t epoch_;
};

namespace detail {

/// The message of the exception being handled, whatever its type.
inline std::string current_exception_message() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace detail
}  // namespace batchpipe
