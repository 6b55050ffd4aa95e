#pragma once
/// @file model.hpp
/// @brief MODEL(name) declares a model definition; `ModelDirectory<B>` builds each model once, on
/// first use, and keeps it for every action of the class that names it.

#include <batchpipe/core/batch.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/chain.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <typeindex>
#include <vector>

/// @brief Declares a model definition in a batch class:
/// `BATCHPIPE_MODEL(mlp)() { return Net{...}; }`.
///
/// The definition takes no arguments and returns any descriptor: a LibTorch module, a struct of a
/// module and its optimizer, anything. It is never called by users (it needs a key only the
/// library holds, so a call does not compile): the class's ModelDirectory calls it once, when an
/// action that names the model (`ACTION(train, .model = "mlp")`) first runs or when the model is
/// first read, and hands the same descriptor to every such action.
///
/// `MODEL` is the short name of this macro (see BATCHPIPE_NO_SHORT_MACROS).
///
/// @code
/// struct MyBatch : bp::Batch<MyBatch> {
///   BATCHPIPE_MODEL(linear)() { return torch::nn::Linear(4, 1); }
///   BATCHPIPE_ACTION(fit, .model = "linear", .singleton = true)(torch::nn::Linear& net) { ... }
/// };
/// @endcode
#define BATCHPIPE_MODEL(name)                                                                         \
  friend struct ::batchpipe::detail::access;                                                          \
  struct bp_model_##name {                                                                            \
    using prev =                                                                                      \
        decltype(bp_model_chain(::batchpipe::detail::rank<::batchpipe::detail::max_chain_length>{})); \
    static constexpr int depth = prev::depth + 1;                                                     \
    static_assert(depth < ::batchpipe::detail::max_chain_length, "too many MODELs in one class");     \
    static constexpr ::std::string_view label = #name;                                                \
    template <class bp_B, ::batchpipe::detail::model_pass bp_pass>                                    \
    static auto define() {                                                                            \
      return bp_B::template bp_define_##name<bp_pass>();                                              \
    }                                                                                                 \
  };                                                                                                  \
  static bp_model_##name bp_model_chain(::batchpipe::detail::rank<bp_model_##name::depth>);           \
  template <::batchpipe::detail::model_pass>                                                          \
  static auto bp_define_##name

/// @def MODEL
/// @brief The short name of BATCHPIPE_MODEL, unless BATCHPIPE_NO_SHORT_MACROS is defined.
#ifndef BATCHPIPE_NO_SHORT_MACROS
#ifdef MODEL
#error \
    "MODEL is already defined elsewhere: define BATCHPIPE_NO_SHORT_MACROS before including batchpipe and write BATCHPIPE_MODEL"
#endif
#define MODEL(name) BATCHPIPE_MODEL(name)
#endif

namespace batchpipe {

namespace detail {

/// The descriptor type that model definition Model of B returns.
template <class B, class Model>
using model_type_t = decltype(access::build_model<B, Model>());

}  // namespace detail

/// @brief What the directory says of one model.
struct ModelInfo {
  std::string name;    ///< the name given to MODEL
  std::string type;    ///< the descriptor's C++ type
  bool built = false;  ///< whether the model is built now
};

/// @brief The models of batch class B: built once each, on first use, and kept.
///
/// Building happens under the model's own lock, so when many threads ask for a model at once it
/// is built exactly once and they all get the same descriptor. A definition that throws leaves
/// the model unbuilt (the next use tries again) and the error names the model. `reset` drops a
/// model; the next use builds a new one, while actions running with the old one keep it alive.
///
/// Models are built on first use rather than when the program starts (so a program that never
/// trains never pays for the model, and a definition may rely on anything set up in main) and
/// are kept per class rather than per pipeline (so a training pipeline and an evaluation
/// pipeline share the weights).
///
/// @code
/// auto& models = MyBatch::models();
/// for (const auto& m : models.list()) std::cout << m.name << ' ' << m.built << '\n';
/// std::shared_ptr<Net> net = models.get<Net>("mlp");   // builds it if needed
/// models.reset("mlp");                                  // the next use builds a fresh one
/// @endcode
template <class B>
class ModelDirectory {
 public:
  /// Not copyable: a class has one directory, instance().
  ModelDirectory(const ModelDirectory&) = delete;
  /// Not assignable: a class has one directory, instance().
  ModelDirectory& operator=(const ModelDirectory&) = delete;

  /// The directory of B (made on first use; thread-safe).
  static ModelDirectory& instance() {
    static ModelDirectory directory;
    return directory;
  }

  /// The declared models' names, in order of declaration.
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    for (const auto& slot : slots_) result.push_back(slot->name);
    return result;
  }

  /// Each declared model: name, type and whether it is built now.
  std::vector<ModelInfo> list() const {
    std::vector<ModelInfo> result;
    for (const auto& slot : slots_) {
      std::scoped_lock lock(slot->mutex);
      result.push_back({slot->name, slot->type_name, slot->model != nullptr});
    }
    return result;
  }

  /// True when B declares a model `name`.
  bool contains(std::string_view name) const { return find(name) != nullptr; }

  /// True when model `name` is built now; an Error when B has no such model.
  bool is_built(std::string_view name) const {
    const Slot& slot = at(name);
    std::scoped_lock lock(slot.mutex);
    return slot.model != nullptr;
  }

  /// The model `name` as a T, built now if it is not yet. An Error when the class has no such
  /// model or its descriptor is not a T.
  template <class T>
  std::shared_ptr<T> get(std::string_view name) {
    Slot& slot = typed_at<T>(name);
    std::scoped_lock lock(slot.mutex);
    if (!slot.model) slot.model = build(slot);
    return std::static_pointer_cast<T>(slot.model);
  }

  /// Replaces the model `name` with `model` (a loaded checkpoint, say).
  template <class T>
  void set(std::string_view name, T model) {
    Slot& slot = typed_at<T>(name);
    auto fresh = std::make_shared<T>(std::move(model));
    std::scoped_lock lock(slot.mutex);
    slot.model = std::move(fresh);
  }

  /// Drops model `name`; the next use builds it again.
  void reset(std::string_view name) {
    Slot& slot = at(name);
    std::scoped_lock lock(slot.mutex);
    slot.model.reset();
  }

  /// Drops every model.
  void reset() {
    for (auto& slot : slots_) {
      std::scoped_lock lock(slot->mutex);
      slot->model.reset();
    }
  }

 private:
  struct Slot {
    std::string name;
    std::type_index type;
    std::string type_name;
    std::shared_ptr<void> (*make)();
    mutable std::mutex mutex;
    std::shared_ptr<void> model;
  };

  ModelDirectory() {
    detail::for_each_link<detail::access::last_model<B>>([this]<class Model>() {
      using T = detail::model_type_t<B, Model>;
      auto make = []() -> std::shared_ptr<void> {
        // Direct initialisation from the definition's result: no copy or move of T is needed.
        return std::shared_ptr<T>(new T(detail::access::build_model<B, Model>()));
      };
      slots_.push_back(std::unique_ptr<Slot>(
          new Slot{std::string(Model::label), typeid(T), detail::type_name<T>(), make, {}, {}}));
    });
  }

  std::shared_ptr<void> build(const Slot& slot) const {
    try {
      return slot.make();
    } catch (...) {
      std::throw_with_nested(Error("building model '" + slot.name + "' of " + detail::type_name<B>() +
                                   " failed: " + detail::current_exception_message()));
    }
  }

  const Slot* find(std::string_view name) const {
    for (const auto& slot : slots_) {
      if (slot->name == name) return slot.get();
    }
    return nullptr;
  }

  Slot& at(std::string_view name) const {
    if (const Slot* slot = find(name)) return const_cast<Slot&>(*slot);
    throw Error(detail::type_name<B>() + " has no model '" + std::string(name) + "' (models: " +
                detail::join_names(slots_, [](const auto& slot) { return slot->name; }) + ")");
  }

  /// The slot of model `name`, checked to hold a T.
  template <class T>
  Slot& typed_at(std::string_view name) const {
    Slot& slot = at(name);
    if (slot.type != typeid(T)) {
      throw Error("model '" + slot.name + "' of " + detail::type_name<B>() + " is a " + slot.type_name +
                  ", not a " + detail::type_name<T>());
    }
    return slot;
  }

  std::vector<std::unique_ptr<Slot>> slots_;
};

template <class Derived>
ModelDirectory<Derived>& Batch<Derived>::models() {
  return ModelDirectory<Derived>::instance();
}

}  // namespace batchpipe
