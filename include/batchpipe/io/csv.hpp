#pragma once
/// @file io/csv.hpp
/// @brief CSV files with a header row, read into numeric tensors by column name.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace batchpipe::io {

namespace detail {

/// Splits one CSV line into fields; double quotes may enclose a field (with "" for a quote).
inline std::vector<std::string> split_csv_line(std::string_view line, char delimiter) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == delimiter) {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return fields;
}

inline bool parse_number(std::string_view text, double& value) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

}  // namespace detail

/// @brief Named columns: what read_csv returns and write_csv takes. It is the type of a
/// Dataset's data, so a table read from a file can make a dataset as it is.
using Table = std::map<std::string, at::Tensor, std::less<>>;

/// @brief Options of read_csv.
struct CsvOptions {
  char delimiter = ',';               ///< the character between fields
  at::ScalarType dtype = at::kFloat;  ///< the type of every column's tensor
};

/// @brief Reads the named columns of a CSV file with a header row: one 1-D tensor per column,
/// one element per data row. Blank lines are skipped.
///
/// Errors name the file and, for a bad row, its line number: a column missing from the header
/// (the header's columns are listed), a row with the wrong number of fields, a value that is not
/// a number.
///
/// @code
/// auto table = bp::io::read_csv("iris.csv", {"sepal_length", "sepal_width", "label"});
/// at::Tensor x = at::stack({table["sepal_length"], table["sepal_width"]}, 1);
/// bp::Dataset<MyBatch> dataset(static_cast<std::size_t>(x.size(0)), table);
/// @endcode
inline Table read_csv(const std::filesystem::path& path, const std::vector<std::string>& columns,
                      const CsvOptions& options = {}) {
  std::ifstream in(path);
  if (!in) throw FileError(path, std::filesystem::exists(path) ? "cannot open" : "no such file");
  std::string line;
  if (!std::getline(in, line)) throw FileError(path, "empty file: no header row");
  // A UTF-8 byte-order mark (spreadsheets write one) is not part of the first column's name.
  if (line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);
  const auto header = detail::split_csv_line(line, options.delimiter);

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

  std::vector<std::vector<double>> values(columns.size());
  for (std::size_t line_number = 2; std::getline(in, line); ++line_number) {
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
    const auto fields = detail::split_csv_line(line, options.delimiter);
    if (fields.size() != header.size()) {
      throw FileError(path, "line " + std::to_string(line_number) + ": " + std::to_string(fields.size()) +
                                " fields, the header has " + std::to_string(header.size()));
    }
    for (std::size_t c = 0; c < picked.size(); ++c) {
      double value = 0;
      if (!detail::parse_number(fields[picked[c]], value)) {
        throw FileError(path, "line " + std::to_string(line_number) + ", column '" + columns[c] + "': '" +
                                  fields[picked[c]] + "' is not a number");
      }
      values[c].push_back(value);
    }
  }

  Table table;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    at::Tensor column = at::empty({static_cast<int64_t>(values[c].size())}, at::kDouble);
    std::copy(values[c].begin(), values[c].end(), column.data_ptr<double>());
    table[columns[c]] = column.to(options.dtype);
  }
  return table;
}

/// @brief Writes 1-D tensors of equal length as CSV columns, with a header row.
inline void write_csv(const std::filesystem::path& path, const Table& columns) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw FileError(path, "cannot create");
  int64_t rows = -1;
  std::vector<at::Tensor> data;
  bool first = true;
  for (const auto& [name, tensor] : columns) {
    if (tensor.dim() != 1 || (rows >= 0 && tensor.size(0) != rows)) {
      throw FileError(path, "column '" + name + "' must be 1-D with as many rows as the others");
    }
    rows = tensor.size(0);
    data.push_back(tensor.to(at::kDouble).cpu().contiguous());
    out << (first ? "" : ",") << name;
    first = false;
  }
  out << '\n';
  out.precision(17);
  for (int64_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < data.size(); ++c) out << (c ? "," : "") << data[c].data_ptr<double>()[r];
    out << '\n';
  }
  if (!out) throw FileError(path, "write failed");
}

}  // namespace batchpipe::io
