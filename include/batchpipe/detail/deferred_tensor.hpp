#pragma once
// A tensor component whose value is computed when it is first read. An action may leave its
// result so, for the action after it to fold the computation into its own pass: ImagesBatch's
// normalize leaves uint8 pixels with the table of their 256 results, and a crop that follows
// reads the pixels once and writes floats once, where normalize and crop apart would write the
// floats and then read and write them again. Every read through the batch (operator[], get,
// try_get) computes the value first, and a batch leaves a chain of actions with every deferred
// component computed (Pipeline::run_steps), so only the actions that know the recipe ever see
// one; what users get is always the tensor.

#include <ATen/core/Tensor.h>

#include <any>
#include <utility>

namespace batchpipe::detail {

struct DeferredTensor {
  /// What the computation starts from.
  at::Tensor input;
  /// What the value is, for an action that folds the computation into its own (its parameters).
  std::any recipe;
  /// Computes the value from input and recipe.
  at::Tensor (*compute)(const DeferredTensor&) = nullptr;
};

/// Replaces a deferred tensor held by `value` with the tensor it stands for; leaves anything
/// else as it is.
inline void settle(std::any& value) {
  if (const auto* deferred = std::any_cast<DeferredTensor>(&value)) {
    at::Tensor computed = deferred->compute(*deferred);
    value = std::move(computed);
  }
}

}  // namespace batchpipe::detail
