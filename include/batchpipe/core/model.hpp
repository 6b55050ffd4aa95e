#pragma once
/// @file model.hpp
/// @brief MODEL(name) declares a model definition; `ModelDirectory<B>` builds each model once, on
/// first use, and keeps it for every action of the class that names it.

#include <batchpipe/core/batch.hpp>
#include <batchpipe/core/config.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/model_instance.hpp>
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
/// `BATCHPIPE_MODEL(mlp)() { return Net{...}; }`, or `BATCHPIPE_MODEL(mlp)(const bp::Config& c)`.
///
/// The definition takes nothing, or the config of the instance being built, and returns any
/// descriptor: a LibTorch module, a struct of a module and its optimizer, anything. It is never
/// called by users (it needs a key only the library holds, so a call does not compile): a
/// ModelInstance calls it once, when an action that names the model (`ACTION(train, .model =
/// "mlp")`) first runs or when the model is first read, and hands the same descriptor to every
/// such action. The class's directory holds one instance per definition, built from an empty
/// config; a pipeline may hold its own (Pipeline::init_model).
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
    static auto define(const ::batchpipe::Config& bp_config) {                                        \
      if constexpr (requires { bp_B::template bp_define_##name<bp_pass>(bp_config); }) {              \
        return bp_B::template bp_define_##name<bp_pass>(bp_config);                                   \
      } else {                                                                                        \
        return bp_B::template bp_define_##name<bp_pass>();                                            \
      }                                                                                               \
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
using model_type_t = decltype(access::build_model<B, Model>(std::declval<const Config&>()));

}  // namespace detail

/// @brief What the directory says of one model.
struct ModelInfo {
  std::string name;    ///< the name given to MODEL
  std::string type;    ///< the descriptor's C++ type
  bool built = false;  ///< whether the model is built now
};

/// @brief The models of batch class B: one ModelInstance per definition, built once, on first
/// use, from an empty config, and kept.
///
/// Building happens under the model's own lock, so when many threads ask for a model at once it
/// is built exactly once and they all get the same descriptor. A definition that throws leaves
/// the model unbuilt (the next use tries again) and the error names the model. `reset` drops a
/// model; the next use builds a new one, while actions running with the old one keep it alive.
///
/// Models are built on first use rather than when the program starts (so a program that never
/// trains never pays for the model, and a definition may rely on anything set up in main) and
/// are kept per class unless a pipeline holds its own instance (Pipeline::init_model), so a
/// training pipeline and an evaluation pipeline share the weights.
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
    for (const auto& model : models_) result.push_back(model.name());
    return result;
  }

  /// Each declared model: name, type and whether it is built now.
  std::vector<ModelInfo> list() const {
    std::vector<ModelInfo> result;
    for (const auto& model : models_) result.push_back({model.name(), model.type_name(), model.is_built()});
    return result;
  }

  /// True when B declares a model `name`.
  bool contains(std::string_view name) const { return find(name) != nullptr; }

  /// True when model `name` is built now; an Error when B has no such model.
  bool is_built(std::string_view name) const { return at(name).is_built(); }

  /// The model `name` as a T, built now if it is not yet. An Error when the class has no such
  /// model or its descriptor is not a T.
  template <class T>
  std::shared_ptr<T> get(std::string_view name) const {
    return at(name).template get<T>();
  }

  /// Replaces the model `name` with `model` (a loaded checkpoint, say).
  template <class T>
  void set(std::string_view name, T model) const {
    at(name).set(std::move(model));
  }

  /// Drops model `name`; the next use builds it again.
  void reset(std::string_view name) const { at(name).reset(); }

  /// Drops every model.
  void reset() const {
    for (const auto& model : models_) model.reset();
  }

  /// The class's instance of model `name` (what actions get when their pipeline holds none).
  const ModelInstance& model_instance(std::string_view name) const { return at(name); }

  /// A new, unbuilt instance of model `name` that its definition builds from `config`.
  ModelInstance make_instance(std::string_view name, Config config) const {
    return at(name).with_config(std::move(config));
  }

 private:
  ModelDirectory() {
    detail::for_each_link<detail::access::last_model<B>>([this]<class Model>() {
      using T = detail::model_type_t<B, Model>;
      auto make = [](const Config& config) -> std::shared_ptr<void> {
        // Direct initialisation from the definition's result: no copy or move of T is needed.
        return std::shared_ptr<T>(new T(detail::access::build_model<B, Model>(config)));
      };
      models_.push_back(ModelInstance(std::make_shared<const detail::ModelDefinition>(detail::ModelDefinition{
                                          std::string(Model::label), detail::type_name<B>(), typeid(B),
                                          typeid(T), detail::type_name<T>(), make}),
                                      Config()));
    });
  }

  const ModelInstance* find(std::string_view name) const {
    for (const auto& model : models_) {
      if (model.name() == name) return &model;
    }
    return nullptr;
  }

  const ModelInstance& at(std::string_view name) const {
    if (const ModelInstance* model = find(name)) return *model;
    throw Error(detail::type_name<B>() + " has no model '" + std::string(name) + "' (models: " +
                detail::join_names(models_, [](const auto& model) { return model.name(); }) + ")");
  }

  std::vector<ModelInstance> models_;
};

template <class Derived>
ModelDirectory<Derived>& Batch<Derived>::models() {
  return ModelDirectory<Derived>::instance();
}

}  // namespace batchpipe
