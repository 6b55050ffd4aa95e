#pragma once
/// @file index.hpp
/// @brief Index: the unique ids of a dataset's items, their rows in the data, and their files.

#include <batchpipe/core/error.hpp>
#include <batchpipe/core/random.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <compare>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <variant>
#include <vector>

namespace batchpipe {

/// @brief An item's id: an integer or a string (a file name, say).
///
/// Converts implicitly from integers and strings, so `index.position(7)` and
/// `index.position("cat.png")` read naturally. Ids compare, hash and print.
class Id {
 public:
  /// The integer id 0.
  Id() = default;
  /// An integer id, from any integer type but bool.
  template <std::integral T>
  requires(!std::same_as<T, bool>) Id(T number) : value_(static_cast<std::int64_t>(number)) {}
  /// A string id.
  Id(std::string text) : value_(std::move(text)) {}
  /// A string id.
  Id(const char* text) : value_(std::string(text)) {}
  /// A string id.
  Id(std::string_view text) : value_(std::string(text)) {}

  /// True for an integer id, false for a string id.
  bool is_integer() const noexcept { return std::holds_alternative<std::int64_t>(value_); }

  /// The integer id; an Error for a string id.
  std::int64_t integer() const {
    if (!is_integer()) throw Error("Id: '" + string() + "' is a string, not an integer");
    return std::get<std::int64_t>(value_);
  }

  /// The string id; an Error for an integer id.
  const std::string& string() const {
    if (is_integer())
      throw Error("Id: " + std::to_string(std::get<std::int64_t>(value_)) + " is an integer, not a string");
    return std::get<std::string>(value_);
  }

  /// The id as text.
  std::string to_string() const {
    return is_integer() ? std::to_string(std::get<std::int64_t>(value_)) : std::get<std::string>(value_);
  }

  /// The id as a variant: its integer or its string.
  const std::variant<std::int64_t, std::string>& value() const noexcept { return value_; }

  /// Equal ids have the same kind and value: `Id(7)` and `Id("7")` differ.
  friend bool operator==(const Id&, const Id&) = default;
  /// Integer ids order before string ids; ids of one kind order by value.
  friend auto operator<=>(const Id&, const Id&) = default;
  /// Prints the id as text.
  friend std::ostream& operator<<(std::ostream& out, const Id& id) { return out << id.to_string(); }

 private:
  std::variant<std::int64_t, std::string> value_{std::int64_t{0}};
};

/// @brief The id as text, for messages.
inline std::string to_string(const Id& id) { return id.to_string(); }

}  // namespace batchpipe

/// @brief Hashes an Id, so ids can key `std::unordered_map` and `std::unordered_set`.
template <>
struct std::hash<batchpipe::Id> {
  /// The hash of the id's value (its integer or its string).
  std::size_t operator()(const batchpipe::Id& id) const noexcept {
    return std::hash<std::variant<std::int64_t, std::string>>{}(id.value());
  }
};

namespace batchpipe {

/// @brief How `Index::split` shares the items out. Shares must be finite, >= 0 and add up to 1.
struct Shares {
  double train = 0.8;       ///< share of the training part
  double test = 0.2;        ///< share of the test part
  double validation = 0.0;  ///< share of the validation part
};

class Index;

struct IndexSplit;

/// @brief The ordered, unique ids of a dataset's items.
///
/// An index maps each position (0 .. size()-1) to an id and to a *source row*: the row of the
/// dataset's preloaded data, or of its files list, where the item lives. A fresh index's rows are
/// its positions; a subset or a split keeps the rows of the items it picked, so every index cut
/// from one dataset addresses the same data. Copies are cheap (the ids are shared).
///
/// @code
/// bp::Index range(60000);                                 // ids 0 .. 59999
/// bp::Index named(std::vector<std::string>{"a", "b", "c"});
/// auto files = bp::Index::from_glob("data/*.png");        // ids are file names
/// auto parts = range.split({.train = 0.8, .test = 0.2}, /*shuffle seed*/ 42);
/// @endcode
class Index {
 public:
  /// An empty index.
  Index() : source_(empty_source()) {}

  /// Ids 0 .. n-1.
  explicit Index(std::size_t n) : source_(n ? std::make_shared<Source>() : empty_source()) {
    if (n) mutable_source().size = n;
  }

  /// The given integer ids, which must be unique.
  explicit Index(const std::vector<std::int64_t>& ids) : Index(std::vector<Id>(ids.begin(), ids.end())) {}

  /// The given string ids, which must be unique.
  explicit Index(const std::vector<std::string>& ids) : Index(std::vector<Id>(ids.begin(), ids.end())) {}

  /// The given ids, which must be unique.
  explicit Index(std::vector<Id> ids) : source_(std::make_shared<Source>()) {
    auto& source = mutable_source();
    source.size = ids.size();
    source.row_of.reserve(ids.size());
    for (std::size_t row = 0; row < ids.size(); ++row) {
      auto [where, inserted] = source.row_of.emplace(ids[row], row);
      if (!inserted) {
        throw Error("Index: duplicate id '" + to_string(ids[row]) + "' at positions " +
                    std::to_string(where->second) + " and " + std::to_string(row));
      }
    }
    source.ids = std::move(ids);
  }

  /// A files index: one item per path, its id the file name (without the extension when
  /// `strip_extension`). Two paths with the same id are an error naming both.
  static Index from_paths(std::vector<std::filesystem::path> paths, bool strip_extension = false) {
    std::vector<Id> ids;
    ids.reserve(paths.size());
    std::unordered_map<std::string, std::size_t> first_seen;
    for (std::size_t i = 0; i < paths.size(); ++i) {
      auto name = (strip_extension ? paths[i].stem() : paths[i].filename()).string();
      if (auto [where, inserted] = first_seen.emplace(name, i); !inserted) {
        throw Error("files index: two files have the id '" + name + "': " + paths[where->second].string() +
                    " and " + paths[i].string());
      }
      ids.emplace_back(std::move(name));
    }
    return from_files(std::move(ids), std::move(paths));
  }

  /// A files index with the given ids (unique; an Error names a repeated one), the item with
  /// ids[i] in the file paths[i]: ids that say more than a file name ("cat/001.jpg").
  static Index from_files(std::vector<Id> ids, std::vector<std::filesystem::path> paths) {
    if (ids.size() != paths.size()) {
      throw Error("files index: " + std::to_string(ids.size()) + " ids for " + std::to_string(paths.size()) +
                  " files");
    }
    Index index(std::move(ids));
    index.mutable_source().paths = std::move(paths);
    return index;
  }

  /// A files index of the regular files matching `pattern`, sorted by path. `*` and `?` match
  /// within one path component, in any component (`data/*/img_??.png`). Symlinks are followed;
  /// one that leads nowhere (dangling, or a loop) is not a file and is skipped. A folder or file
  /// that cannot be read is a FileError naming it.
  static Index from_glob(const std::string& pattern, bool strip_extension = false);

  /// A files index of the regular files in `folder` (and its subfolders when `recursive`),
  /// keeping those whose extension is listed (".png") when `extensions` is not empty. Symlinks
  /// and unreadable entries are treated as by from_glob; symlinked subfolders are not entered.
  static Index from_folder(const std::filesystem::path& folder,
                           const std::vector<std::string>& extensions = {}, bool recursive = false,
                           bool strip_extension = false);

  /// Number of items.
  std::size_t size() const noexcept { return rows_ ? rows_->size() : source_->size; }
  /// True when the index has no items.
  bool empty() const noexcept { return size() == 0; }

  /// The id at `position`.
  Id id(std::size_t position) const {
    const std::size_t row = source(position);
    if (source_->ids.empty()) return static_cast<std::int64_t>(row);
    return source_->ids[row];
  }

  /// All ids, in order.
  std::vector<Id> ids() const {
    std::vector<Id> result;
    result.reserve(size());
    for (std::size_t i = 0; i < size(); ++i) result.push_back(id(i));
    return result;
  }

  /// The source row (of the preloaded data, or of the files list) of the item at `position`.
  std::size_t source(std::size_t position) const {
    check_position(position);
    return rows_ ? (*rows_)[position] : position;
  }

  /// How many rows the data under this index has: the size of the index it was cut from.
  std::size_t source_size() const noexcept { return source_->size; }

  /// True when the id is in this index.
  bool contains(const Id& id) const { return find(id).has_value(); }

  /// The position of `id`; an Error when it is not in this index.
  std::size_t position(const Id& id) const {
    if (auto found = find(id)) return *found;
    throw Error("Index: no item with id '" + to_string(id) + "'");
  }

  /// True for a files index.
  bool has_paths() const noexcept { return !source_->paths.empty(); }

  /// The file of the item at `position` (files indexes only).
  const std::filesystem::path& path(std::size_t position) const {
    if (!has_paths()) throw Error("Index: path() asked of an index that holds no files");
    return source_->paths[source(position)];
  }

  /// The items at `positions` (unique, in range), in that order.
  [[nodiscard]] Index subset(std::span<const std::size_t> positions) const {
    std::vector<std::size_t> sorted(positions.begin(), positions.end());
    std::sort(sorted.begin(), sorted.end());
    if (auto repeated = std::adjacent_find(sorted.begin(), sorted.end()); repeated != sorted.end()) {
      throw Error("Index::subset: position " + std::to_string(*repeated) + " is given twice");
    }
    for (std::size_t p : positions) check_position(p);
    return subset_unchecked(positions);
  }

  /// The items with the given ids, in that order.
  [[nodiscard]] Index subset_of_ids(std::span<const Id> ids) const {
    std::vector<std::size_t> positions;
    positions.reserve(ids.size());
    for (const auto& id : ids) positions.push_back(position(id));
    return subset(positions);
  }

  /// Splits into train, test and validation parts by shares, in index order or, with a seed,
  /// shuffled. Part sizes are the shares of size() rounded by largest remainder, then each non-zero
  /// share gets at least one item (an Error when the index has fewer items than non-zero shares;
  /// an empty index gives three empty parts).
  [[nodiscard]] IndexSplit split(Shares shares, std::optional<std::uint64_t> shuffle = std::nullopt) const;

  /// Splits into train (`train_share`) and test (the rest).
  [[nodiscard]] IndexSplit split(double train_share,
                                 std::optional<std::uint64_t> shuffle = std::nullopt) const;

  /// The items in a random order drawn from `seed`.
  Index shuffled(std::uint64_t seed) const {
    std::vector<std::size_t> order(size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    Random(seed).shuffle(order);
    return subset_unchecked(order);
  }

  /// The items at `positions`, unchecked: for callers that made the positions themselves.
  [[nodiscard]] Index subset_unchecked(std::span<const std::size_t> positions) const {
    auto rows = std::make_shared<std::vector<std::size_t>>();
    rows->reserve(positions.size());
    for (std::size_t p : positions) rows->push_back(rows_ ? (*rows_)[p] : p);
    Index result;
    result.source_ = source_;
    result.rows_ = std::move(rows);
    result.positions_ = std::make_shared<PositionTable>();
    return result;
  }

  /// The items of `parts`, one after another. Parts cut from one index (the batches of one
  /// dataset) keep its rows and files; parts of different indexes make a new index of their ids,
  /// which must be unique (an Error names a repeated id), keeping the files when every part has
  /// them.
  [[nodiscard]] static Index concatenated(std::span<const Index> parts) {
    if (parts.empty()) return Index();
    const bool one_source = std::all_of(
        parts.begin(), parts.end(), [&](const Index& part) { return part.source_ == parts.front().source_; });
    if (one_source) {
      std::vector<std::size_t> rows;
      for (const Index& part : parts) {
        for (std::size_t i = 0; i < part.size(); ++i) rows.push_back(part.source(i));
      }
      Index whole(parts.front().source_size());
      whole.source_ = parts.front().source_;
      return whole.subset_unchecked(rows);
    }
    std::vector<Id> ids;
    std::vector<std::filesystem::path> paths;
    const bool with_paths =
        std::all_of(parts.begin(), parts.end(), [](const Index& part) { return part.has_paths(); });
    for (const Index& part : parts) {
      for (std::size_t i = 0; i < part.size(); ++i) {
        ids.push_back(part.id(i));
        if (with_paths) paths.push_back(part.path(i));
      }
    }
    Index result(std::move(ids));
    result.mutable_source().paths = std::move(paths);
    return result;
  }

  /// Equal indexes hold the same ids in the same order (their rows and files are not compared).
  friend bool operator==(const Index& a, const Index& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a.id(i) != b.id(i)) return false;
    }
    return true;
  }

 private:
  struct Source {
    std::size_t size = 0;
    std::vector<Id> ids;                         // empty: the ids are the rows
    std::vector<std::filesystem::path> paths;    // empty: not a files index
    std::unordered_map<Id, std::size_t> row_of;  // id -> row, when ids are explicit
  };
  // Position of each row in a subset, built on the first look-up by id.
  struct PositionTable {
    std::once_flag built;
    std::unordered_map<std::size_t, std::size_t> position_of_row;
  };

  Source& mutable_source() { return const_cast<Source&>(*source_); }
  // One source for every empty index (each batch starts with one): no allocation per batch.
  static const std::shared_ptr<const Source>& empty_source() {
    static const std::shared_ptr<const Source> empty = std::make_shared<const Source>();
    return empty;
  }

  void check_position(std::size_t position) const {
    if (position >= size()) {
      throw Error("Index: position " + std::to_string(position) + " is out of range (size " +
                  std::to_string(size()) + ")");
    }
  }

  std::optional<std::size_t> find_row(const Id& id) const {
    if (source_->ids.empty()) {
      if (!id.is_integer() || id.integer() < 0 || static_cast<std::size_t>(id.integer()) >= source_->size) {
        return std::nullopt;
      }
      return static_cast<std::size_t>(id.integer());
    }
    auto found = source_->row_of.find(id);
    if (found == source_->row_of.end()) return std::nullopt;
    return found->second;
  }

  std::optional<std::size_t> find(const Id& id) const {
    auto row = find_row(id);
    if (!row || !rows_) return row;
    std::call_once(positions_->built, [this] {
      for (std::size_t p = 0; p < rows_->size(); ++p) positions_->position_of_row[(*rows_)[p]] = p;
    });
    auto found = positions_->position_of_row.find(*row);
    if (found == positions_->position_of_row.end()) return std::nullopt;
    return found->second;
  }

  std::shared_ptr<const Source> source_;
  std::shared_ptr<const std::vector<std::size_t>> rows_;  // null: every source row, in order
  std::shared_ptr<PositionTable> positions_;              // with rows_ only: look-ups by id in a subset
};

/// @brief The parts of a split index; an empty share gives an empty index.
struct IndexSplit {
  Index train;       ///< the training items
  Index test;        ///< the test items
  Index validation;  ///< the validation items
};

namespace detail {

/// Glob matching of one path component: `*` any run of characters, `?` one character.
inline bool wildcard_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p, ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++, resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1, t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

inline bool has_wildcard(const std::string& component) {
  return component.find_first_of("*?") != std::string::npos;
}

// A path that leads nowhere: missing, under a file, or a symlink loop (ELOOP). The files indexes
// skip such entries as not files; any other failure to read an entry is an Error naming it.
inline bool leads_nowhere(const std::error_code& ec) {
  return ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory ||
         ec == std::errc::too_many_symbolic_link_levels;
}

inline void throw_unreadable(const std::filesystem::path& path, const std::error_code& ec) {
  throw FileError(path, "cannot read it for a files index: " + ec.message());
}

/// True for a regular file, following symlinks; false for anything else, a symlink loop included.
/// The listing's file type answers without a stat, except for a symlink, which is followed.
inline bool is_file(const std::filesystem::directory_entry& entry) {
  std::error_code ec;
  const bool file = entry.is_regular_file(ec);
  if (ec && !leads_nowhere(ec)) throw_unreadable(entry.path(), ec);
  return file;
}

/// Calls `visit` with each entry of `folder` (and of its subfolders, with a recursive `Iterator`)
/// through the error_code overloads, which let no std::filesystem_error escape. A folder that
/// leads nowhere has no entries; a failure names the folder, or the entry it stopped at.
template <class Iterator, class Visit>
void for_each_entry(const std::filesystem::path& folder, Visit visit) {
  std::error_code ec;
  Iterator entry(folder, ec);
  std::filesystem::path last = folder;
  for (; !ec && entry != Iterator(); entry.increment(ec)) {
    last = entry->path();
    visit(*entry);
  }
  if (ec && !leads_nowhere(ec)) throw_unreadable(last, ec);
}

/// Expands the components of a glob pattern one at a time, from `base`.
inline void expand_glob(const std::filesystem::path& base, std::vector<std::string>::const_iterator component,
                        std::vector<std::string>::const_iterator end,
                        std::vector<std::filesystem::path>& out) {
  namespace fs = std::filesystem;
  if (component == end) {
    std::error_code ec;  // a failure here leaves the type unknown: is_file asks again, and reports it
    if (is_file(fs::directory_entry(base, ec))) out.push_back(base);
    return;
  }
  if (!has_wildcard(*component)) {
    expand_glob(base / *component, component + 1, end, out);
    return;
  }
  for_each_entry<fs::directory_iterator>(base.empty() ? fs::path(".") : base, [&](const auto& entry) {
    const auto name = entry.path().filename().string();
    if (wildcard_match(*component, name)) expand_glob(base / name, component + 1, end, out);
  });
}

}  // namespace detail

inline Index Index::from_glob(const std::string& pattern, bool strip_extension) {
  const std::filesystem::path path(pattern);
  std::vector<std::string> components;
  for (const auto& part : path.relative_path()) components.push_back(part.string());
  std::vector<std::filesystem::path> found;
  detail::expand_glob(path.root_path(), components.begin(), components.end(), found);
  std::sort(found.begin(), found.end());
  return from_paths(std::move(found), strip_extension);
}

inline Index Index::from_folder(const std::filesystem::path& folder,
                                const std::vector<std::string>& extensions, bool recursive,
                                bool strip_extension) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) {
    throw Error("files index: '" + folder.string() + "' is not a folder");
  }
  std::vector<fs::path> found;
  auto keep_wanted = [&](const fs::directory_entry& entry) {
    const auto extension = entry.path().extension().string();
    const bool listed =
        extensions.empty() || std::find(extensions.begin(), extensions.end(), extension) != extensions.end();
    if (listed && detail::is_file(entry)) found.push_back(entry.path());  // the name first: no stat
  };
  if (recursive) {
    detail::for_each_entry<fs::recursive_directory_iterator>(folder, keep_wanted);
  } else {
    detail::for_each_entry<fs::directory_iterator>(folder, keep_wanted);
  }
  std::sort(found.begin(), found.end());
  return from_paths(std::move(found), strip_extension);
}

inline IndexSplit Index::split(Shares shares, std::optional<std::uint64_t> shuffle) const {
  const std::array<double, 3> share{shares.train, shares.test, shares.validation};
  const double total = share[0] + share[1] + share[2];
  // A NaN passes every comparison, so finiteness is checked apart.
  if (std::any_of(share.begin(), share.end(), [](double s) { return !std::isfinite(s) || s < 0; }) ||
      std::abs(total - 1.0) > 1e-9) {
    throw Error("Index::split: shares must be finite, >= 0 and add up to 1 (train " +
                std::to_string(share[0]) + ", test " + std::to_string(share[1]) + ", validation " +
                std::to_string(share[2]) + ")");
  }
  const std::size_t n = size();
  const auto wanted =
      static_cast<std::size_t>(std::count_if(share.begin(), share.end(), [](double s) { return s > 0; }));
  if (n > 0 && n < wanted) {
    throw Error("Index::split: " + std::to_string(wanted) + " non-zero shares need at least " +
                std::to_string(wanted) + " items, the index has " + std::to_string(n));
  }
  // Largest remainder: each part gets its share rounded down, then the items left go one each to
  // the parts rounded down the most (ties: train, test, validation), so the sizes add up to n.
  std::array<std::size_t, 3> count{};
  std::array<double, 3> rest{};
  std::size_t given = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const double quota = static_cast<double>(n) * share[i] / total;
    count[i] = std::min(static_cast<std::size_t>(quota), n - given);
    rest[i] = quota - static_cast<double>(count[i]);
    given += count[i];
  }
  std::array<std::size_t, 3> by_rest{0, 1, 2};
  std::stable_sort(by_rest.begin(), by_rest.end(),
                   [&](std::size_t a, std::size_t b) { return rest[a] > rest[b]; });
  for (std::size_t k = 0; given < n; ++k, ++given) ++count[by_rest[k % 3]];
  // A non-zero share rounded to nothing takes an item from the largest part, which has two or more
  // since n >= wanted: a validation part asked for is never silently empty.
  for (std::size_t i = 0; i < 3; ++i) {
    if (share[i] > 0 && count[i] == 0 && n > 0) {
      --*std::max_element(count.begin(), count.end());
      ++count[i];
    }
  }
  const Index ordered = shuffle ? shuffled(*shuffle) : *this;
  std::vector<std::size_t> positions(n);
  for (std::size_t i = 0; i < n; ++i) positions[i] = i;
  const std::span<const std::size_t> all(positions);
  return IndexSplit{ordered.subset_unchecked(all.subspan(0, count[0])),
                    ordered.subset_unchecked(all.subspan(count[0], count[1])),
                    ordered.subset_unchecked(all.subspan(count[0] + count[1]))};
}

inline IndexSplit Index::split(double train_share, std::optional<std::uint64_t> shuffle) const {
  return split(Shares{.train = train_share, .test = 1.0 - train_share, .validation = 0.0}, shuffle);
}

}  // namespace batchpipe
