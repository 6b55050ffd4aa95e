#pragma once
// detail::access: the one friend of every batch class. The ACTION and MODEL macros declare it a
// friend, so the library reaches the chains and model definitions even when a user declares
// them in a private section.

#include <batchpipe/detail/chain.hpp>
#include <batchpipe/detail/deferred_tensor.hpp>

#include <any>
#include <cstdint>
#include <string_view>

namespace batchpipe::detail {

/// The key that a model definition's template parameter demands. Only `access` can make one,
/// so user code cannot call a model definition (MODEL's promise).
struct model_pass {
 private:
  constexpr model_pass() = default;
  friend struct access;
};

struct access {
  static constexpr model_pass pass() { return model_pass{}; }

  /// The last ACTION / MODEL descriptor of B (chain_root when there is none).
  template <class B>
  using last_action = decltype(B::bp_action_chain(rank<max_chain_length>{}));
  template <class B>
  using last_model = decltype(B::bp_model_chain(rank<max_chain_length>{}));

  /// The base class that gives Pipeline<B> one fluent method per action of B.
  template <class B, class Pipeline>
  using fluent_base = typename last_action<B>::template fluent<Pipeline>;

  /// Runs the model definition described by Model, with the config of the instance it builds.
  template <class B, class Model, class Config>
  static auto build_model(const Config& config) {
    return Model::template define<B, pass()>(config);
  }

  /// The batch's private state, set by the library when it makes a batch.
  template <class B>
  static auto& index(B& batch) {
    return batch.index_;
  }
  template <class B>
  static auto& number(B& batch) {
    return batch.number_;
  }
  template <class B>
  static auto& epoch(B& batch) {
    return batch.epoch_;
  }
  template <class B>
  static auto& random(B& batch) {
    return batch.random_;
  }
  template <class B>
  static auto& context(B& batch) {
    return batch.context_;
  }
  template <class B>
  static auto& components(B& batch) {
    return batch.components_;
  }
  /// Component `name` as stored, a deferred tensor not computed (detail/deferred_tensor.hpp);
  /// nullptr when there is none.
  template <class B>
  static std::any* stored_component(B& batch, std::string_view name) {
    auto found = batch.components_.find(name);
    return found == batch.components_.end() ? nullptr : &found->second;
  }
  /// Makes every deferred component of the batch; free when it has none.
  template <class B>
  static void settle_components(B& batch) {
    if (!batch.has_deferred_) return;
    for (auto& entry : batch.components_) settle(entry.second);
    batch.has_deferred_ = false;
  }
  /// True when Action takes components as an earlier action left them, deferred (the image
  /// kernels' actions, which fold normalize into their pass): B says so with a member template
  /// `bp_reads_deferred<Action>`. Every other action gets every component made.
  template <class B, class Action>
  static constexpr bool reads_deferred() {
    if constexpr (requires { B::template bp_reads_deferred<Action>; }) {
      return B::template bp_reads_deferred<Action>;
    } else {
      return false;
    }
  }
};

}  // namespace batchpipe::detail
