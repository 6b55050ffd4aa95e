#pragma once
/// @file action_options.hpp
/// @brief ActionOptions: what an ACTION is declared with; ActionInfo: what the registry says of it.

#include <string>
#include <string_view>
#include <vector>

namespace batchpipe {

/// @brief An action's options, written like keyword arguments: `ACTION(train, .model = "mlp",
/// .singleton = true)`.
struct ActionOptions {
  /// The MODEL the action works with; it receives the model's descriptor as its first argument.
  std::string_view model{};
  /// At most one call of this action runs at a time, across all batches and pipelines.
  bool singleton = false;
  /// Probability that a batch goes through the action. The draw derives from the run's seed, the
  /// batch number and the action's place in the pipeline (not from the batch's random stream),
  /// so the same seed skips the same batches.
  double probability = 1.0;
  /// The names of the parameters a pipeline passes (after the model), in order, separated by
  /// commas, each with an optional default written in JSON: `.params = "mean, std = 0.25"`. They
  /// let a pipeline written in a config name its arguments (Pipeline::from_config). Empty: the
  /// action takes positional arguments only.
  std::string_view params{};
};

/// @brief What the registry says of one action.
struct ActionInfo {
  /// The action's name, as given to ACTION.
  std::string name;
  /// The MODEL the action works with; empty when it uses none.
  std::string model;
  /// True when at most one call of the action runs at a time (ActionOptions::singleton).
  bool singleton = false;
  /// Probability that a batch goes through the action (ActionOptions::p).
  double probability = 1.0;
  /// The C++ types of the arguments a pipeline passes (after the model), when known: an
  /// overloaded or template action has none and cannot be called by name.
  std::vector<std::string> parameters;
  /// The parameters' names (ActionOptions::params); empty when the action does not name them.
  std::vector<std::string> parameter_names;
  /// Each named parameter's declared default as JSON text; empty where there is none.
  std::vector<std::string> parameter_defaults;
  /// True when Pipeline::append and ActionRegistry::call can use the action (not overloaded or a template).
  bool callable_by_name = false;
};

}  // namespace batchpipe
