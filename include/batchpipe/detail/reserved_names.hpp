#pragma once
// Names an action may not take. An ACTION becomes a member of the batch class and a fluent
// method of Pipeline<B>, so an action called `size` or `run` would silently hide the member of
// Batch or Pipeline that the library and users rely on. The ACTION macro checks its name here.

#include <array>
#include <string_view>

namespace batchpipe::detail {

/// The public members of Batch<Derived> and Pipeline<B>, and the prefix of the library's own.
inline constexpr std::array<std::string_view, 43> reserved_action_names{
    // Batch
    "index", "size", "number", "epoch", "random", "variable", "get", "set", "try_get", "has", "erase",
    "components", "item", "models", "actions", "batch_type", "config", "skip", "skipped",
    // Pipeline
    "with", "append", "init_variable", "variables", "action_names", "has_dataset", "dataset", "gen_batch",
    "next_batch", "reset_iter", "run", "from_config", "with_config", "init_model", "with_model",
    "model_instance", "model", "repeat", "with_probability", "before", "after", "rebatch", "join",
    // the steps of a config's pipeline that are not actions (Pipeline::from_config)
    "merge"};

constexpr bool is_reserved_action_name(std::string_view name) {
  if (name.starts_with("bp_")) return true;
  for (const std::string_view reserved : reserved_action_names) {
    if (name == reserved) return true;
  }
  return false;
}

}  // namespace batchpipe::detail
