#pragma once
/// @file model_instance.hpp
/// @brief ModelInstance: one built (or to be built) model of a MODEL definition, made from a
/// config, shared by handle. The class's model directory holds one per definition; a pipeline
/// may hold its own (Pipeline::init_model).

#include <batchpipe/core/config.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/type_name.hpp>
#include <batchpipe/fwd.hpp>

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <typeindex>
#include <utility>

namespace batchpipe {

namespace detail {

/// A model definition as its batch class declares it (MODEL): what its instances share.
struct ModelDefinition {
  std::string name;   ///< the definition's name (MODEL(name))
  std::string owner;  ///< the batch class, for errors
  std::type_index owner_type;
  std::type_index type;  ///< the descriptor's type
  std::string type_name;
  std::shared_ptr<void> (*make)(const Config&);
};

/// What a model instance is made of: its definition, its config, its lock and the model.
struct ModelSlot {
  ModelSlot(std::shared_ptr<const ModelDefinition> of, Config settings)
      : definition(std::move(of)), config(std::move(settings)) {}
  std::shared_ptr<const ModelDefinition> definition;
  Config config;
  mutable std::mutex mutex;
  std::shared_ptr<void> model;
};

}  // namespace detail

/// @brief One instance of a model definition: the definition, the config it is built from, and
/// the model once built. Copies are handles to the same instance.
///
/// The model is built on first use (by an action or by get), under the instance's own lock, so
/// threads asking at once get the same model; a definition that throws leaves it unbuilt and the
/// error names the model. The class's directory (ModelDirectory) holds one instance per
/// definition, built from an empty config; Pipeline::init_model makes others.
///
/// @code
/// auto train = dataset.pipeline().init_model("mlp", bp::Config::parse(R"({"hidden": 64})")).train();
/// train.run({.batch_size = 128});
/// bp::ModelInstance trained = train.model_instance("mlp");
/// auto eval = test.pipeline().with_model(trained).evaluate();   // the trained weights
/// @endcode
class ModelInstance {
 public:
  /// The definition's name.
  const std::string& name() const noexcept { return definition().name; }
  /// The config the model is (or will be) built from.
  const Config& config() const noexcept { return slot_->config; }
  /// The descriptor's C++ type.
  const std::string& type_name() const noexcept { return definition().type_name; }

  /// True when the model is built now.
  bool is_built() const {
    std::scoped_lock lock(slot_->mutex);
    return slot_->model != nullptr;
  }

  /// The model as a T, built now if it is not yet; an Error when its descriptor is not a T.
  template <class T>
  std::shared_ptr<T> get() const {
    check_type<T>();
    std::scoped_lock lock(slot_->mutex);
    if (!slot_->model) slot_->model = build();
    return std::static_pointer_cast<T>(slot_->model);
  }

  /// Replaces the model (a loaded checkpoint, say).
  template <class T>
  void set(T model) const {
    check_type<T>();
    auto fresh = std::make_shared<T>(std::move(model));
    std::scoped_lock lock(slot_->mutex);
    slot_->model = std::move(fresh);
  }

  /// Drops the model; the next use builds a new one from the config.
  void reset() const {
    std::scoped_lock lock(slot_->mutex);
    slot_->model.reset();
  }

  /// A new, unbuilt instance of the same definition built from `config`.
  ModelInstance with_config(Config config) const {
    return ModelInstance(slot_->definition, std::move(config));
  }

  /// True when both handles refer to one instance.
  friend bool operator==(const ModelInstance& a, const ModelInstance& b) noexcept {
    return a.slot_ == b.slot_;
  }

  /// The batch class whose definition this is.
  std::type_index batch_class() const noexcept { return definition().owner_type; }

 private:
  template <class B>
  friend class ModelDirectory;
  ModelInstance(std::shared_ptr<const detail::ModelDefinition> definition, Config config)
      : slot_(std::make_shared<detail::ModelSlot>(std::move(definition), std::move(config))) {}
  const detail::ModelDefinition& definition() const noexcept { return *slot_->definition; }

  template <class T>
  void check_type() const {
    if (definition().type != typeid(T)) {
      throw Error("model '" + name() + "' of " + definition().owner + " is a " + type_name() + ", not a " +
                  detail::type_name<T>());
    }
  }

  std::shared_ptr<void> build() const {
    try {
      return definition().make(slot_->config);
    } catch (...) {
      std::throw_with_nested(Error("building model '" + name() + "' of " + definition().owner +
                                   " failed: " + detail::current_exception_message()));
    }
  }

  std::shared_ptr<detail::ModelSlot> slot_;
};

}  // namespace batchpipe
