#pragma once
// What a pipeline hands each batch of a run: its variables, its config and its model instances,
// shared by every batch of the run (one pointer per batch, not a copy of each).

#include <batchpipe/core/config.hpp>
#include <batchpipe/core/variables.hpp>

#include <memory>

namespace batchpipe::detail {

struct RunContext {
  Variables variables;
  Config config;
};

using RunContextPtr = std::shared_ptr<const RunContext>;

}  // namespace batchpipe::detail
