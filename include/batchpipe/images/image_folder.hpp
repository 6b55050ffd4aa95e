#pragma once
/// @file image_folder.hpp
/// @brief ImageFolder: a labelled set of image files, from a folder of class folders
/// (`train/cat/001.jpg`, as torchvision's ImageFolder and Keras' image_dataset_from_directory
/// read them) or from a list file (CSV of path and label); its dataset() feeds ImagesBatch.

#include <batchpipe/core/dataset.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/index.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/images/images_batch.hpp>
#include <batchpipe/io/csv.hpp>
#include <batchpipe/io/detail/file_bytes.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace batchpipe {

/// @brief Which files an ImageFolder takes.
struct ImageFolderOptions {
  /// The extensions of the image files, compared without regard to case (".JPG" is ".jpg").
  std::vector<std::string> extensions{".jpg", ".jpeg", ".png", ".bmp", ".gif",
                                      ".tga", ".ppm",  ".pgm", ".pnm"};
};

/// @brief A labelled set of image files: an Index whose ids are the files' paths relative to
/// the folder ("cat/001.jpg"), a label per item (int64, one per index row), and the classes'
/// names, sorted, so that label k is classes[k] on every machine.
///
/// @code
/// auto folder = bp::ImageFolder::from_folder("data/train");   // data/train/<class>/<image>
/// auto [train, test, validation] = folder.dataset().split(0.9, /*shuffle seed*/ 1);
/// auto pipeline = train.pipeline().load("image").normalize(0, 255);
/// @endcode
struct ImageFolder {
  Index index;                       ///< the files; ids are their paths relative to the folder
  at::Tensor labels;                 ///< int64 [items]: the class of each index row
  std::vector<std::string> classes;  ///< the class names, label k being classes[k]

  /// The dataset of the files, with the labels preloaded as the component "labels".
  template <class B = ImagesBatch>
  Dataset<B> dataset() const {
    return Dataset<B>(index, {{"labels", labels}});
  }

  /// The images in the class folders of `folder`: each subfolder is a class (its name the class
  /// name), holding image files at any depth. Hidden files and folders (named ".*") are
  /// skipped; files of other extensions are skipped. A folder with no class folders, or a class
  /// folder with no images, is a FileError naming it.
  static ImageFolder from_folder(const std::filesystem::path& folder, const ImageFolderOptions& options = {});

  /// The images a list file names: a CSV of path and label (a first row `path,label` is a header
  /// and skipped), paths relative to the list's folder. Labels are class names, sorted into
  /// `classes`, or, when every label is a whole number, the labels themselves (classes "0" to
  /// the largest, at most 2^20). Paths are compared in one spelling ("./a.jpg" is "a.jpg"): a
  /// file listed twice is an error. A file that does not exist, a row without two fields: a
  /// FileError naming the list and the line.
  static ImageFolder from_list(const std::filesystem::path& list);
};

namespace detail {

/// True when `name` ends in one of `extensions`, compared without regard to ASCII case.
inline bool has_extension(const std::filesystem::path& name, const std::vector<std::string>& extensions) {
  const auto lower = [](std::string text) {
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
    return text;
  };
  const std::string extension = lower(name.extension().string());
  return std::any_of(extensions.begin(), extensions.end(),
                     [&](const std::string& wanted) { return lower(wanted) == extension; });
}

/// True when a component of `relative` is hidden (".name").
inline bool is_hidden(const std::filesystem::path& relative) {
  return std::any_of(relative.begin(), relative.end(), [](const std::filesystem::path& part) {
    const auto text = part.string();
    return text.size() > 1 && text[0] == '.' && text != "..";
  });
}

/// The labels of a list file as class indexes: whole numbers as they are, else the names sorted.
inline std::vector<int64_t> class_labels(const std::vector<std::string>& names,
                                         std::vector<std::string>& classes) {
  std::vector<int64_t> labels(names.size());
  bool numbers = true;
  for (std::size_t i = 0; i < names.size() && numbers; ++i) {
    const auto& name = names[i];
    const auto end = name.data() + name.size();
    auto [stop, error] = std::from_chars(name.data(), end, labels[i]);
    numbers = error == std::errc() && stop == end && labels[i] >= 0;
  }
  if (numbers) {
    // Numbers name as many classes as the largest says: a bound keeps a stray 2147483647 from
    // making two billion class names (ImageNet-21k has 21,841 classes).
    constexpr int64_t most_classes = 1 << 20;
    const int64_t largest = names.empty() ? -1 : *std::max_element(labels.begin(), labels.end());
    if (largest >= most_classes) {
      throw Error("the label " + std::to_string(largest) + " would make more than " +
                  std::to_string(most_classes) + " classes; give the classes names, or numbers from 0");
    }
    for (int64_t k = 0; k <= largest; ++k) classes.push_back(std::to_string(k));
    return labels;
  }
  std::map<std::string, int64_t> rank;
  for (const auto& name : names) rank.emplace(name, 0);
  for (auto& [name, k] : rank) {
    k = static_cast<int64_t>(classes.size());
    classes.push_back(name);
  }
  for (std::size_t i = 0; i < names.size(); ++i) labels[i] = rank.at(names[i]);
  return labels;
}

inline at::Tensor labels_tensor(const std::vector<int64_t>& labels) {
  at::Tensor tensor = at::empty({static_cast<int64_t>(labels.size())}, at::kLong);
  if (!labels.empty())
    std::memcpy(tensor.data_ptr<int64_t>(), labels.data(), labels.size() * sizeof(int64_t));
  return tensor;
}

}  // namespace detail

inline ImageFolder ImageFolder::from_folder(const std::filesystem::path& folder,
                                            const ImageFolderOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(folder, ec))
    throw FileError(folder, "not a folder (an image folder holds class folders)");
  std::vector<fs::path> class_folders;
  detail::for_each_entry<fs::directory_iterator>(folder, [&](const fs::directory_entry& entry) {
    std::error_code entry_ec;
    if (!detail::is_hidden(entry.path().filename()) && entry.is_directory(entry_ec))
      class_folders.push_back(entry.path());
  });
  std::sort(class_folders.begin(), class_folders.end());
  if (class_folders.empty()) {
    throw FileError(folder,
                    "holds no class folders (an image folder holds one folder per class: "
                    "<folder>/<class>/<image>)");
  }
  ImageFolder result;
  std::vector<Id> ids;
  std::vector<fs::path> paths;
  std::vector<int64_t> labels;
  for (const auto& class_folder : class_folders) {
    std::vector<fs::path> found;
    detail::for_each_entry<fs::recursive_directory_iterator>(
        class_folder, [&](const fs::directory_entry& entry) {
          const fs::path relative = entry.path().lexically_relative(folder);
          if (!detail::is_hidden(relative) && detail::has_extension(relative, options.extensions) &&
              detail::is_file(entry))
            found.push_back(entry.path());
        });
    if (found.empty()) {
      throw FileError(class_folder, "class folder holds no images (extensions " +
                                        batchpipe::detail::join_names(
                                            options.extensions, [](const std::string& e) { return e; }) +
                                        ")");
    }
    std::sort(found.begin(), found.end());
    for (auto& path : found) {
      ids.emplace_back(path.lexically_relative(folder).generic_string());
      paths.push_back(std::move(path));
      labels.push_back(static_cast<int64_t>(result.classes.size()));
    }
    result.classes.push_back(class_folder.filename().string());
  }
  result.index = Index::from_files(std::move(ids), std::move(paths));
  result.labels = detail::labels_tensor(labels);
  return result;
}

inline ImageFolder ImageFolder::from_list(const std::filesystem::path& list) {
  namespace fs = std::filesystem;
  const auto bytes = io::detail::read_file_bytes(list, io::detail::whole_file_limit);
  std::string text(bytes.begin(), bytes.end());
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);
  io::detail::CsvRecords records(text, ',');
  const fs::path base = list.parent_path();
  std::vector<Id> ids;
  std::vector<fs::path> paths;
  std::vector<std::string> names;
  std::vector<std::string> fields;
  while (records.next(fields, list)) {
    const std::string line = "line " + std::to_string(records.line());
    if (ids.empty() && names.empty() && fields.size() == 2 && fields[0] == "path" && fields[1] == "label")
      continue;
    if (fields.size() != 2 || fields[0].empty() || fields[1].empty()) {
      throw FileError(list,
                      line + ": a row is a path and a label, found " + std::to_string(fields.size()) +
                          " field(s): " + batchpipe::detail::printable(fields.empty() ? "" : fields[0]));
    }
    fs::path path = base / fs::path(fields[0]);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      throw FileError(path, "named by " + list.string() + " " + line + ", " +
                                (fs::exists(path, ec) ? "is not a regular file" : "does not exist"));
    }
    // One spelling per file ("./a.jpg" is "a.jpg"), so a file listed twice is found.
    ids.emplace_back(fs::path(fields[0]).lexically_normal().generic_string());
    paths.push_back(std::move(path));
    names.push_back(fields[1]);
  }
  if (ids.empty()) throw FileError(list, "the list names no images");
  ImageFolder result;
  try {
    result.labels = detail::labels_tensor(detail::class_labels(names, result.classes));
  } catch (const Error& e) {
    throw FileError(list, e.what());
  }
  try {
    result.index = Index::from_files(std::move(ids), std::move(paths));
  } catch (const Error& e) {  // a file listed twice
    throw FileError(list, e.what());
  }
  return result;
}

}  // namespace batchpipe
