#pragma once
/// @file io/csv.hpp
/// @brief CSV files with a header row, read into numeric tensors by column name.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace batchpipe::io {

namespace detail {

/// The records of a CSV text (RFC 4180): fields split at the delimiter; double quotes around a
/// field (with "" for a quote) keep delimiters and line breaks in it, so a record may span lines.
class CsvRecords {
 public:
  CsvRecords(std::string_view text, char delimiter) : text_(text), delimiter_(delimiter) {}

  /// Reads the next record into `fields`; false at the end of the text. Lines of blanks before
  /// it are skipped. A quote never closed is a FileError naming `path`.
  bool next(std::vector<std::string>& fields, const std::filesystem::path& path) {
    skip_blank_lines();
    if (pos_ == text_.size()) return false;
    start_line_ = line_;
    fields.assign(1, std::string());
    bool quoted = false;
    for (; pos_ < text_.size(); ++pos_) {
      const char c = text_[pos_];
      if (c == '\n') ++line_;
      if (quoted) {
        if (c == '"' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '"') {
          fields.back() += '"';
          ++pos_;
        } else if (c == '"') {
          quoted = false;
        } else {
          fields.back() += c;
        }
      } else if (c == '"') {
        quoted = true;
      } else if (c == delimiter_) {
        fields.emplace_back();
      } else if (c == '\n') {
        ++pos_;
        return true;
      } else if (c != '\r') {
        fields.back() += c;
      }
    }
    // Not the end of a last field: the rest of the file would silently have become one.
    if (quoted)
      throw FileError(path, "line " + std::to_string(start_line_) + ": a quoted field is never closed");
    return true;
  }

  /// The line the record last read starts on, counted from 1.
  std::size_t line() const { return start_line_; }

 private:
  void skip_blank_lines() {
    while (pos_ < text_.size()) {
      const auto end = std::min(text_.find('\n', pos_), text_.size());
      if (text_.substr(pos_, end - pos_).find_first_not_of(" \r\t") != std::string_view::npos) return;
      pos_ = std::min(end + 1, text_.size());
      ++line_;
    }
  }

  std::string_view text_;
  char delimiter_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::size_t start_line_ = 0;
};

/// What a column of a dtype holds: integers between two bounds (integer types and bool: read
/// exactly as int64, never through a double, which rounds past 2^53), or numbers up to a
/// magnitude (floating types: read as double).
struct CsvColumnType {
  at::ScalarType dtype;
  bool integral;
  int64_t lowest, highest;  ///< integral types
  double largest;           ///< floating types: the largest finite value
};

/// The column type of `dtype`, whose C++ type is T.
template <class T>
CsvColumnType csv_column_type(at::ScalarType dtype) {
  using limits = std::numeric_limits<T>;
  if constexpr (std::is_integral_v<T>) {
    return {dtype, true, limits::lowest(), limits::max(), 0};
  } else {
    return {dtype, false, 0, 0, static_cast<double>(limits::max())};
  }
}

/// The column type of `dtype`; an Error for a dtype that is no real number (complex, quantized).
inline CsvColumnType csv_column_type(at::ScalarType dtype) {
  const CsvColumnType types[] = {
      csv_column_type<bool>(at::kBool),        csv_column_type<std::uint8_t>(at::kByte),
      csv_column_type<std::int8_t>(at::kChar), csv_column_type<std::int16_t>(at::kShort),
      csv_column_type<std::int32_t>(at::kInt), csv_column_type<std::int64_t>(at::kLong),
      csv_column_type<c10::Half>(at::kHalf),   csv_column_type<c10::BFloat16>(at::kBFloat16),
      csv_column_type<float>(at::kFloat),      csv_column_type<double>(at::kDouble)};
  for (const auto& type : types) {
    if (type.dtype == dtype) return type;
  }
  throw Error(std::string("read_csv: a CSV column cannot be read as dtype ") + c10::toString(dtype) +
              " (integer, bool and floating types can)");
}

/// std::from_chars over all of `text`: a value followed by anything is std::errc::invalid_argument.
template <class T>
std::errc parse_whole(std::string_view text, T& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return end == text.data() + text.size() ? error : std::errc::invalid_argument;
}

/// Reads a value of a column of `type` into `integer` (integral types) or `real` (floating
/// types). Returns what is wrong with `text` ("is not a number", ...), or "" when it is such a
/// value.
inline std::string parse_csv_value(std::string_view text, const CsvColumnType& type, int64_t& integer,
                                   double& real) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  // from_chars takes no '+'; the one dropped here must not be followed by a sign ("+-5").
  if (text.starts_with('+') && !text.starts_with("+-")) text.remove_prefix(1);
  const auto out_of_range = [&] {
    return std::string("is out of range for dtype ") + c10::toString(type.dtype);
  };
  if (type.integral) {
    const auto error = parse_whole(text, integer);
    if (error == std::errc::result_out_of_range) return out_of_range();
    if (error == std::errc()) return integer < type.lowest || integer > type.highest ? out_of_range() : "";
    return parse_whole(text, real) == std::errc::invalid_argument
               ? "is not a number"
               : std::string("is not an integer, as dtype ") + c10::toString(type.dtype) + " needs";
  }
  const auto error = parse_whole(text, real);
  if (error == std::errc::invalid_argument) return "is not a number";
  // Infinities are values of every floating type; a finite number past the largest is not.
  if (error == std::errc::result_out_of_range || (std::isfinite(real) && std::abs(real) > type.largest))
    return out_of_range();
  return "";
}

/// A name as a CSV field: quoted (RFC 4180) when it holds a delimiter, a quote or a line break.
inline std::string csv_field(const std::string& name) {
  if (name.find_first_of(",\"\r\n") == std::string::npos) return name;
  std::string quoted = "\"";
  for (const char c : name) {
    if (c == '"') quoted += '"';  // doubled
    quoted += c;
  }
  return quoted + '"';
}

}  // namespace detail

/// @brief Named columns: what read_csv returns and write_csv takes. It is the type of a
/// Dataset's data, so a table read from a file can make a dataset as it is.
using Table = std::map<std::string, at::Tensor, std::less<>>;

/// @brief Options of read_csv.
struct CsvOptions {
  char delimiter = ',';               ///< the character between fields
  at::ScalarType dtype = at::kFloat;  ///< the type of every column's tensor: integer, bool or floating
};

/// @brief Reads the named columns of a CSV file with a header row: one 1-D tensor per column,
/// one element per data row. Blank lines are skipped; a quoted field may hold the delimiter,
/// quotes (as "") and line breaks, in the header too.
///
/// Integer and bool dtypes read each value exactly as an integer (no rounding through `double`);
/// floating dtypes read it as a `double`. Errors name the file and, for a bad row, the line it
/// starts on: a column missing from the header (the header's columns are listed), a row with the
/// wrong number of fields, a value that is not a number, not an integer for an integer dtype, or
/// out of the dtype's range (300 for uint8, 2 for bool, 1e39 for float).
///
/// @code
/// auto table = bp::io::read_csv("iris.csv", {"sepal_length", "sepal_width", "label"});
/// at::Tensor x = at::stack({table["sepal_length"], table["sepal_width"]}, 1);
/// bp::Dataset<MyBatch> dataset(static_cast<std::size_t>(x.size(0)), table);
/// @endcode
inline Table read_csv(const std::filesystem::path& path, const std::vector<std::string>& columns,
                      const CsvOptions& options = {}) {
  const auto type = detail::csv_column_type(options.dtype);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, std::filesystem::exists(path) ? "cannot open" : "no such file");
  // All of it: a quoted field may go on past a line break.
  std::string text{std::istreambuf_iterator<char>(in), {}};
  // A UTF-8 byte-order mark (spreadsheets write one) is not part of the first column's name.
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);
  detail::CsvRecords records(text, options.delimiter);
  std::vector<std::string> header;
  if (!records.next(header, path)) throw FileError(path, "empty file: no header row");

  std::vector<std::size_t> picked;
  for (const auto& name : columns) {
    auto found = std::find(header.begin(), header.end(), name);
    if (found == header.end()) {
      throw FileError(
          path, "no column '" + name + "' (columns: " +
                    batchpipe::detail::join_names(header, [](const std::string& h) { return h; }) + ")");
    }
    picked.push_back(static_cast<std::size_t>(found - header.begin()));
  }

  // One of the two per column, as the dtype is integral or not.
  std::vector<std::vector<int64_t>> integers(columns.size());
  std::vector<std::vector<double>> reals(columns.size());
  std::vector<std::string> fields;
  while (records.next(fields, path)) {
    const auto line = [&] { return "line " + std::to_string(records.line()); };
    if (fields.size() != header.size()) {
      throw FileError(path, line() + ": " + std::to_string(fields.size()) + " fields, the header has " +
                                std::to_string(header.size()));
    }
    for (std::size_t c = 0; c < picked.size(); ++c) {
      const std::string& field = fields[picked[c]];
      int64_t integer = 0;
      double real = 0;
      const auto problem = detail::parse_csv_value(field, type, integer, real);
      if (!problem.empty())
        throw FileError(path, line() + ", column '" + columns[c] + "': '" + field + "' " + problem);
      if (type.integral) {
        integers[c].push_back(integer);
      } else {
        reals[c].push_back(real);
      }
    }
  }

  Table table;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    // The values are in the dtype's range: the conversion is exact, or rounds a double.
    table[columns[c]] = (type.integral ? at::tensor(c10::ArrayRef<int64_t>(integers[c]))
                                       : at::tensor(c10::ArrayRef<double>(reals[c])))
                            .to(options.dtype);
  }
  return table;
}

/// @brief Writes 1-D tensors of equal length as CSV columns, with a header row. Names holding a
/// comma, a quote or a line break are quoted (RFC 4180); integer and bool columns are written
/// exactly, floating ones with 17 significant digits, so read_csv reads back the same values.
inline void write_csv(const std::filesystem::path& path, const Table& columns) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw FileError(path, "cannot create");
  int64_t rows = -1;
  std::vector<at::Tensor> data;
  for (const auto& [name, tensor] : columns) {
    if (tensor.dim() != 1 || (rows >= 0 && tensor.size(0) != rows)) {
      throw FileError(path, "column '" + name + "' must be 1-D with as many rows as the others");
    }
    rows = tensor.size(0);
    // int64 through a double would round past 2^53.
    const bool integral = c10::isIntegralType(tensor.scalar_type(), /*includeBool=*/true);
    data.push_back(tensor.to(integral ? at::kLong : at::kDouble).cpu().contiguous());
    out << (data.size() > 1 ? "," : "") << detail::csv_field(name);
  }
  out << '\n';
  out.precision(17);
  for (int64_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < data.size(); ++c) {
      out << (c ? "," : "");
      if (data[c].scalar_type() == at::kLong) {
        out << data[c].data_ptr<int64_t>()[r];
      } else {
        out << data[c].data_ptr<double>()[r];
      }
    }
    out << '\n';
  }
  if (!out) throw FileError(path, "write failed");
}

}  // namespace batchpipe::io
