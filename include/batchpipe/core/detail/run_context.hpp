#pragma once
// What a pipeline hands each batch of a run: its variables, its config and its model instances,
// shared by every batch of the run (one pointer per batch, not a copy of each).

#include <batchpipe/core/config.hpp>
#include <batchpipe/core/model_instance.hpp>
#include <batchpipe/core/variables.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace batchpipe::detail {

struct RunContext {
  Variables variables;
  Config config;
  /// The pipeline's own instances by definition name; a definition not here is the class's.
  std::map<std::string, ModelInstance, std::less<>> models;
};

using RunContextPtr = std::shared_ptr<const RunContext>;

}  // namespace batchpipe::detail
