#pragma once
/// @file checkpoint.hpp
/// @brief Save a batch class's models (parameters, buffers and optimizer state) to a checkpoint
/// file, and load them back. The file is replaced atomically and durably; a load replaces all
/// or nothing.

#include <batchpipe/core/error.hpp>
#include <batchpipe/core/model.hpp>
#include <batchpipe/core/pipeline.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/chain.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/training/training.hpp>

#include <torch/serialize/archive.h>
#include <torch/utils.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

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

/// Loads an optimizer's state. LibTorch's load adds the stored state to the optimizer's own; it is
/// cleared first, so that the state is the checkpoint's, whole (and putting a snapshot back after
/// a failed load is exact).
template <class Optimizer>
void load_optimizer(Optimizer& optimizer, torch::serialize::InputArchive& archive) {
  if constexpr (requires { optimizer.state().clear(); }) optimizer.state().clear();
  optimizer.load(archive);
}

/// A load of models from a checkpoint that replaces all of them or nothing. `add` reads a model's
/// entry and checks every parameter and buffer against the model (name, shape, dtype), changing
/// nothing; `commit` then loads everything.
class CheckpointLoad {
 public:
  explicit CheckpointLoad(std::filesystem::path file) : file_(std::move(file)) {}

  template <class T>
  void add(const std::shared_ptr<T>& model, torch::serialize::InputArchive archive, const std::string& name) {
    if constexpr (self_checkpointing<T>) {
      add_part(
          name, "its load failed", std::move(archive), [model](auto& out) { model->save(out); },
          [model](auto& in) { model->load(in); });
    } else if constexpr (is_torch_model<T>::value) {
      torch::serialize::InputArchive module, optimizer;
      if (!archive.try_read("module", module) || !archive.try_read("optimizer", optimizer)) {
        throw FileError(file_, "model '" + name + "': the checkpoint lacks its module or optimizer");
      }
      add_module(model->module, module, name);
      add_part(
          name, "the optimizer state does not fit", std::move(optimizer),
          [model](auto& out) { model->optimizer.save(out); },
          [model](auto& in) { load_optimizer(model->optimizer, in); });
    } else {
      add_module(*model, archive, name);
    }
  }

  /// Loads what the descriptors and optimizers load themselves, which cannot be checked
  /// beforehand: each is saved to memory first (its current state: little in a fresh program),
  /// and a failure puts back every one loaded so far. Then copies the tensors, checked already.
  void commit() {
    std::vector<std::string> snapshots;
    for (auto& part : parts_) {
      try {
        snapshots.push_back(snapshot(part));
        part.load(part.archive);
      } catch (...) {
        const std::string reason = current_exception_message();
        for (std::size_t i = 0; i < snapshots.size(); ++i) restore(parts_[i], snapshots[i]);
        throw FileError(file_, "model '" + part.model + "': " + part.failure + ": " + reason);
      }
    }
    torch::NoGradGuard no_grad;
    for (auto& copy : copies_) copy.target.copy_(copy.stored);
  }

 private:
  using Save = std::function<void(torch::serialize::OutputArchive&)>;
  using Load = std::function<void(torch::serialize::InputArchive&)>;

  /// What a descriptor or an optimizer loads itself from its archive.
  struct Part {
    std::string model, failure;
    torch::serialize::InputArchive archive;
    Save save;
    Load load;
  };
  /// A tensor of a model, and its value in the checkpoint (same shape and dtype).
  struct Copy {
    at::Tensor target, stored;
  };

  void add_part(const std::string& model, std::string failure, torch::serialize::InputArchive archive,
                Save save, Load load) {
    parts_.push_back(Part{model, std::move(failure), std::move(archive), std::move(save), std::move(load)});
  }

  template <class Module>
  void add_module(const Module& module, torch::serialize::InputArchive& archive, const std::string& model) {
    for (const auto& parameter : module->named_parameters())
      add_tensor(archive, model, "parameter", parameter.key(), parameter.value());
    for (const auto& buffer : module->named_buffers())
      add_tensor(archive, model, "buffer", buffer.key(), buffer.value());
  }

  void add_tensor(torch::serialize::InputArchive& archive, const std::string& model, const std::string& kind,
                  const std::string& name, const at::Tensor& target) {
    const std::string what = "model '" + model + "': " + kind + " '" + name + "'";
    at::Tensor stored;
    if (!archive.try_read(kind + "." + name, stored, kind == "buffer")) {
      throw FileError(file_, "model '" + model + "': no " + kind + " '" + name + "' in the checkpoint");
    }
    if (stored.sizes() != target.sizes()) {
      throw FileError(file_, what + " has shape " + shape_string(stored.sizes()) + " in the checkpoint, " +
                                 shape_string(target.sizes()) + " in the model");
    }
    if (stored.scalar_type() != target.scalar_type()) {
      throw FileError(file_, what + " has dtype " + c10::toString(stored.scalar_type()) +
                                 " in the checkpoint, " + c10::toString(target.scalar_type()) +
                                 " in the model");
    }
    copies_.push_back({target, std::move(stored)});
  }

  static std::string snapshot(const Part& part) {
    torch::serialize::OutputArchive archive;
    part.save(archive);
    std::ostringstream bytes;
    archive.save_to(bytes);
    return std::move(bytes).str();
  }

  static void restore(Part& part, const std::string& bytes) {
    std::istringstream stream(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(stream);
    part.load(archive);
  }

  std::filesystem::path file_;
  std::vector<Part> parts_;
  std::vector<Copy> copies_;
};

/// The file a save writes before renaming it over the checkpoint: created under a fresh name
/// beside it (`<checkpoint>.partial-<random>`), exclusively (O_EXCL: a file or a symbolic link
/// already there is never opened, so no two saves share one and none writes through a planted
/// link). Closed and removed on destruction unless renamed.
class TemporaryFile {
 public:
  explicit TemporaryFile(const std::filesystem::path& checkpoint) {
    std::random_device random;
    int error = EEXIST;
    for (int attempt = 0; attempt < 100 && error == EEXIST; ++attempt) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, ".partial-%08x%08x", random(), random());
      auto name = checkpoint;
      name += suffix;
      fd_ = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
      if (fd_ >= 0) {
        name_ = std::move(name);
        return;
      }
      error = errno;
    }
    throw FileError(checkpoint, "cannot save the checkpoint: " + std::generic_category().message(error));
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(name_.c_str());
  }

  /// Writes all of `data`; errno on an error, else 0.
  int write(const char* data, std::size_t size) const {
    while (size > 0) {
      const ssize_t written = ::write(fd_, data, size);
      if (written < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      data += written;
      size -= static_cast<std::size_t>(written);
    }
    return 0;
  }

  /// Flushes the data to the disk and closes the file; errno on an error, else 0. Synced before
  /// the rename: otherwise a power loss may leave the new name on a file without its data.
  int sync_and_close() {
    int error = ::fsync(fd_) == 0 ? 0 : errno;
    if (::close(std::exchange(fd_, -1)) != 0 && error == 0) error = errno;  // NFS reports here
    return error;
  }

  /// Renames the file over `checkpoint`; errno on an error, else 0.
  int rename_over(const std::filesystem::path& checkpoint) {
    if (::rename(name_.c_str(), checkpoint.c_str()) != 0) return errno;
    renamed_ = true;
    return 0;
  }

 private:
  std::filesystem::path name_;
  int fd_ = -1;
  bool renamed_ = false;
};

/// Syncs the folder of `file` (its entries: a rename) to the disk; errno on an error, else 0.
inline int sync_folder_of(const std::filesystem::path& file) {
  const auto folder = file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int error = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return error == EINVAL ? 0 : error;  // EINVAL: a file system that does not sync folders
}

/// Writes `root` to a new temporary file beside `path`, syncs it, renames it over `path`, and
/// syncs the folder: an interrupted or failed save, or a power loss, leaves the previous
/// checkpoint or the new one, whole.
inline void write_checkpoint(torch::serialize::OutputArchive& root, const std::filesystem::path& path) {
  const auto fail = [&](const char* what, int error) {
    throw FileError(path, std::string(what) + ": " + std::generic_category().message(error));
  };
  TemporaryFile temporary(path);
  // LibTorch must not see a write fail: it then throws from a destructor, which ends the program
  // (pytorch/pytorch#156955). The first error is kept, the rest of the bytes dropped.
  int error = 0;
  try {
    root.save_to([&](const void* data, std::size_t size) {
      if (error == 0) error = temporary.write(static_cast<const char*>(data), size);
      return size;
    });
  } catch (const std::exception& e) {
    throw FileError(path, "cannot save the checkpoint: " + error_message(e));
  }
  if (error == 0) error = temporary.sync_and_close();
  if (error != 0) fail("cannot save the checkpoint", error);  // `temporary` removes the file
  if (const int renaming = temporary.rename_over(path); renaming != 0)
    fail("cannot replace the checkpoint", renaming);
  // The rename itself on the disk: without this, a power loss may bring the previous checkpoint back.
  if (const int syncing = sync_folder_of(path); syncing != 0)
    fail("the checkpoint was replaced but not synced", syncing);
}

inline void read_checkpoint(torch::serialize::InputArchive& root, const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw FileError(path, "no such checkpoint");
  try {
    root.load_from(path.string());
  } catch (const std::exception& e) {
    throw FileError(path, "not a readable checkpoint: " + error_message(e));
  }
}

/// The names of B's models that a checkpoint can hold, in order.
template <class B>
std::vector<std::string> checkpointable_models() {
  std::vector<std::string> names;
  for_each_link<access::last_model<B>>([&]<class Model>() {
    if constexpr (checkpointable<model_type_t<B, Model>>) names.emplace_back(Model::label);
  });
  return names;
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
/// `load(InputArchive&)`) to `path`. A model not yet built is left out: it holds nothing to keep.
///
/// The checkpoint is written to a new temporary file beside `path` (`<path>.partial-<random>`),
/// synced to the disk, then renamed over `path`: an interrupted or failed save, or a power loss,
/// leaves the previous checkpoint as it was (a crash may leave the temporary file behind). Save
/// between runs, not while a pipeline trains the models.
///
/// @code
/// bp::save_checkpoint<FashionBatch>("fashion.pt");
/// bp::load_checkpoint<FashionBatch>("fashion.pt");   // loads the models saved, building them if needed
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

/// @brief Loads the models of batch class B saved in `path` (those built when it was saved) into
/// the model directory, building each first if needed; B's other models are left as they are.
///
/// All or nothing: every parameter and buffer is read and checked first (a missing one, or one of
/// another shape or dtype, is an error naming the model and the parameter), then everything is
/// loaded; an optimizer state or a descriptor's load that fails puts back those loaded before it.
/// A model in the file that B does not have (a checkpoint of another class) is an error.
template <class B>
void load_checkpoint(const std::filesystem::path& path) {
  torch::serialize::InputArchive root;
  detail::read_checkpoint(root, path);
  const auto names = detail::checkpointable_models<B>();
  for (const auto& stored : root.keys()) {
    if (std::find(names.begin(), names.end(), stored) == names.end()) {
      throw FileError(path, "the checkpoint holds model '" + stored + "', which " + detail::type_name<B>() +
                                " does not have (models a checkpoint can hold: " +
                                detail::join_names(names, [](const std::string& name) { return name; }) +
                                ")");
    }
  }
  detail::CheckpointLoad load(path);
  auto& models = B::models();
  detail::for_each_link<detail::access::last_model<B>>([&]<class Model>() {
    using T = detail::model_type_t<B, Model>;
    if constexpr (detail::checkpointable<T>) {
      const std::string name(Model::label);
      torch::serialize::InputArchive archive;
      if (root.try_read(name, archive)) load.add(models.template get<T>(name), std::move(archive), name);
    }
  });
  load.commit();
}

/// @brief Saves the model `name` that `pipeline`'s actions get (its own instance, or the class's)
/// to `path`, replaced atomically and durably as by save_checkpoint; the model is built first if
/// it is not yet.
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
/// instance `pipeline`'s actions get. All or nothing, as load_checkpoint: a missing or misshapen
/// parameter is an error naming it, and leaves the model as it was.
template <class B>
void load_model(const Pipeline<B>& pipeline, std::string_view name, const std::filesystem::path& path) {
  detail::with_checkpointable_model<B>(name, [&]<class T>() {
    const std::string model(name);
    torch::serialize::InputArchive root, archive;
    detail::read_checkpoint(root, path);
    if (!root.try_read(model, archive)) throw FileError(path, "the checkpoint has no model '" + model + "'");
    detail::CheckpointLoad load(path);
    load.add(pipeline.template model<T>(name), std::move(archive), model);
    load.commit();
  });
}

}  // namespace batchpipe
