#pragma once
/// @file checkpoint.hpp
/// @brief Save a batch class's models (parameters, buffers and optimizer state) to a checkpoint
/// file, and load them back. The file is replaced atomically.

#include <batchpipe/core/error.hpp>
#include <batchpipe/core/model.hpp>
#include <batchpipe/core/pipeline.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/chain.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/training/training.hpp>

#include <torch/serialize/archive.h>
#include <torch/utils.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace batchpipe {

namespace detail {

template <class T>
concept torch_module_pointer = requires(T& module) {
  module->named_parameters();
  module->named_buffers();
};

template <class T>
struct is_torch_model : std::false_type {};
template <class M, class O>
struct is_torch_model<TorchModel<M, O>> : std::true_type {};

/// A descriptor that saves and loads itself.
template <class T>
concept self_checkpointing = requires(const T& model, T& target, torch::serialize::OutputArchive& out,
                                      torch::serialize::InputArchive& in) {
  model.save(out);
  target.load(in);
};

template <class T>
concept checkpointable = torch_module_pointer<T> || is_torch_model<T>::value || self_checkpointing<T>;

template <class Module>
void save_module(const Module& module, torch::serialize::OutputArchive& archive) {
  for (const auto& parameter : module->named_parameters())
    archive.write("parameter." + parameter.key(), parameter.value());
  for (const auto& buffer : module->named_buffers())
    archive.write("buffer." + buffer.key(), buffer.value(), true);
}

/// Copies each stored parameter and buffer into the module, checking that each exists and has
/// the module's shape.
template <class Module>
void load_module(Module& module, torch::serialize::InputArchive& archive, const std::filesystem::path& file,
                 const std::string& model) {
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& kind, const std::string& name, at::Tensor& target) {
    at::Tensor stored;
    if (!archive.try_read(kind + "." + name, stored, kind == "buffer")) {
      throw FileError(file, "model '" + model + "': no " + kind + " '" + name + "' in the checkpoint");
    }
    if (stored.sizes() != target.sizes()) {
      throw FileError(file, "model '" + model + "': " + kind + " '" + name + "' has shape " +
                                shape_string(stored.sizes()) + " in the checkpoint, " +
                                shape_string(target.sizes()) + " in the model");
    }
    target.copy_(stored);
  };
  for (auto& parameter : module->named_parameters()) load("parameter", parameter.key(), parameter.value());
  for (auto& buffer : module->named_buffers()) load("buffer", buffer.key(), buffer.value());
}

template <class T>
void save_model(const T& model, torch::serialize::OutputArchive& archive) {
  if constexpr (self_checkpointing<T>) {
    model.save(archive);
  } else if constexpr (is_torch_model<T>::value) {
    torch::serialize::OutputArchive module, optimizer;
    save_module(model.module, module);
    model.optimizer.save(optimizer);
    archive.write("module", module);
    archive.write("optimizer", optimizer);
  } else {
    save_module(model, archive);
  }
}

template <class T>
void load_model(T& model, torch::serialize::InputArchive& archive, const std::filesystem::path& file,
                const std::string& name) {
  if constexpr (self_checkpointing<T>) {
    model.load(archive);
  } else if constexpr (is_torch_model<T>::value) {
    torch::serialize::InputArchive module, optimizer;
    if (!archive.try_read("module", module) || !archive.try_read("optimizer", optimizer)) {
      throw FileError(file, "model '" + name + "': the checkpoint lacks its module or optimizer");
    }
    load_module(model.module, module, file, name);
    try {
      model.optimizer.load(optimizer);
    } catch (const std::exception& e) {
      throw FileError(file, "model '" + name + "': the optimizer state does not fit: " + e.what());
    }
  } else {
    load_module(model, archive, file, name);
  }
}

/// Writes `root` to a temporary file beside `path`, then renames it over `path`: an interrupted or
/// failed save leaves the previous checkpoint as it was.
inline void write_checkpoint(torch::serialize::OutputArchive& root, const std::filesystem::path& path) {
  auto temporary = path;
  temporary += ".partial";
  try {
    root.save_to(temporary.string());
  } catch (const std::exception& e) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw FileError(path, std::string("cannot save the checkpoint: ") + e.what());
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    throw FileError(path, "cannot replace the checkpoint: " + error.message());
  }
}

inline void read_checkpoint(torch::serialize::InputArchive& root, const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw FileError(path, "no such checkpoint");
  try {
    root.load_from(path.string());
  } catch (const std::exception& e) {
    throw FileError(path, std::string("not a readable checkpoint: ") + e.what());
  }
}

/// Calls f.template operator()<T>() with the descriptor type T of B's model `name`, when a
/// checkpoint can hold it; an Error when B has no such model or it cannot be saved.
template <class B, class F>
void with_checkpointable_model(std::string_view name, F&& f) {
  bool found = false;
  for_each_link<access::last_model<B>>([&]<class Model>() {
    if (found || Model::label != name) return;
    found = true;
    using T = model_type_t<B, Model>;
    if constexpr (checkpointable<T>) {
      f.template operator()<T>();
    } else {
      throw Error("model '" + std::string(name) + "' of " + type_name<B>() + " is a " + type_name<T>() +
                  ", which a checkpoint cannot hold");
    }
  });
  if (!found) B::models().model_instance(name);  // the directory's error, listing the models
}

}  // namespace detail

/// @brief Saves every built model of batch class B that a checkpoint can hold (a TorchModel, a
/// LibTorch module, or a descriptor with `save(OutputArchive&) const` and
/// `load(InputArchive&)`) to `path`.
///
/// The checkpoint is written to a temporary file beside `path`, then renamed over it: an
/// interrupted or failed save leaves the previous checkpoint as it was. Save between runs, not
/// while a pipeline trains the models.
///
/// @code
/// bp::save_checkpoint<FashionBatch>("fashion.pt");
/// bp::load_checkpoint<FashionBatch>("fashion.pt");   // builds the models first if needed
/// @endcode
template <class B>
void save_checkpoint(const std::filesystem::path& path) {
  torch::serialize::OutputArchive root;
  auto& models = B::models();
  detail::for_each_link<detail::access::last_model<B>>([&]<class Model>() {
    using T = detail::model_type_t<B, Model>;
    if constexpr (detail::checkpointable<T>) {
      const std::string name(Model::label);
      if (!models.is_built(name)) return;
      torch::serialize::OutputArchive archive;
      detail::save_model(*models.template get<T>(name), archive);
      root.write(name, archive);
    }
  });
  detail::write_checkpoint(root, path);
}

/// @brief Loads the models of batch class B saved in `path` into the model directory (building
/// each first if needed). A model missing from the file, a parameter missing, or a parameter of
/// another shape is an error naming the model and the parameter.
template <class B>
void load_checkpoint(const std::filesystem::path& path) {
  torch::serialize::InputArchive root;
  detail::read_checkpoint(root, path);
  auto& models = B::models();
  detail::for_each_link<detail::access::last_model<B>>([&]<class Model>() {
    using T = detail::model_type_t<B, Model>;
    if constexpr (detail::checkpointable<T>) {
      const std::string name(Model::label);
      torch::serialize::InputArchive archive;
      if (!root.try_read(name, archive)) throw FileError(path, "the checkpoint has no model '" + name + "'");
      detail::load_model(*models.template get<T>(name), archive, path, name);
    }
  });
}

/// @brief Saves the model `name` that `pipeline`'s actions get (its own instance, or the class's)
/// to `path`, replaced atomically; the model is built first if it is not yet.
///
/// @code
/// auto train = dataset.pipeline().init_model("mlp", config).train();
/// train.run({.batch_size = 128});
/// bp::save_model(train, "mlp", "mlp.pt");
/// auto eval = test.pipeline().init_model("mlp", config).evaluate();
/// bp::load_model(eval, "mlp", "mlp.pt");   // the trained weights, in eval's own instance
/// @endcode
template <class B>
void save_model(const Pipeline<B>& pipeline, std::string_view name, const std::filesystem::path& path) {
  detail::with_checkpointable_model<B>(name, [&]<class T>() {
    torch::serialize::OutputArchive root, archive;
    detail::save_model(*pipeline.template model<T>(name), archive);
    root.write(std::string(name), archive);
    detail::write_checkpoint(root, path);
  });
}

/// @brief Loads model `name` saved by save_model (or save_checkpoint) from `path` into the
/// instance `pipeline`'s actions get. A missing or misshapen parameter is an error naming it.
template <class B>
void load_model(const Pipeline<B>& pipeline, std::string_view name, const std::filesystem::path& path) {
  detail::with_checkpointable_model<B>(name, [&]<class T>() {
    torch::serialize::InputArchive root, archive;
    detail::read_checkpoint(root, path);
    if (!root.try_read(std::string(name), archive)) {
      throw FileError(path, "the checkpoint has no model '" + std::string(name) + "'");
    }
    detail::load_model(*pipeline.template model<T>(name), archive, path, std::string(name));
  });
}

}  // namespace batchpipe
