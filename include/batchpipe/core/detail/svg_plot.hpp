#pragma once
// A line plot of a few series, one panel each, written as an SVG file: what a progress notifier
// draws of the pipeline variables over a run. Plain text, no dependency, opens in any browser.

#include <batchpipe/core/error.hpp>
#include <batchpipe/detail/strings.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// One line of a plot: (x, y) points in order of x.
struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

/// A number for an axis label: short, and never in an exponent unless it must be.
inline std::string axis_label(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return text;
}

/// `text` with the characters that XML gives a meaning escaped, and control characters (which
/// XML 1.0 allows in no form) written out as `\xNN`.
inline std::string xml_escaped(const std::string& text) {
  std::string escaped;
  for (const char c : printable(text)) {
    switch (c) {
      case '<':
        escaped += "&lt;";
        break;
      case '>':
        escaped += "&gt;";
        break;
      case '&':
        escaped += "&amp;";
        break;
      case '"':
        escaped += "&quot;";
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

/// The SVG text of one panel per series, stacked, each `width` x `panel_height` pixels, x
/// labelled `x_label`. A series with more points than pixels is thinned to about two per pixel.
inline std::string svg_plot(const std::vector<PlotSeries>& series, int width, int panel_height,
                            const std::string& x_label) {
  const int height = panel_height * static_cast<int>(std::max<std::size_t>(series.size(), 1));
  constexpr int left = 70, right = 20, top = 28, bottom = 36;
  std::string svg =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
      std::to_string(width) + "\" height=\"" + std::to_string(height) + "\" viewBox=\"0 0 " +
      std::to_string(width) + " " + std::to_string(height) +
      "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  const double plot_width = std::max(1, width - left - right);
  const double plot_height = std::max(1, panel_height - top - bottom);
  for (std::size_t panel = 0; panel < series.size(); ++panel) {
    const auto& points = series[panel].points;
    const double y0 = static_cast<double>(panel) * panel_height;
    double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
    if (!points.empty()) {
      x_min = x_max = points.front().first;
      y_min = y_max = points.front().second;
      for (const auto& [x, y] : points) {
        x_min = std::min(x_min, x), x_max = std::max(x_max, x);
        y_min = std::min(y_min, y), y_max = std::max(y_max, y);
      }
    }
    if (x_max == x_min) x_max = x_min + 1;
    if (y_max == y_min) y_max = y_min + 1;
    auto px = [&](double x) { return left + (x - x_min) / (x_max - x_min) * plot_width; };
    auto py = [&](double y) { return y0 + top + (y_max - y) / (y_max - y_min) * plot_height; };
    char box[160];
    std::snprintf(
        box, sizeof box,
        "<rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", left,
        y0 + top, plot_width, plot_height);
    svg += box;
    svg += "<text x=\"" + std::to_string(left) + "\" y=\"" + axis_label(y0 + top - 8) +
           "\" font-weight=\"bold\">" + xml_escaped(series[panel].name) + "</text>\n";
    svg += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + axis_label(py(y_max) + 4) +
           "\" text-anchor=\"end\">" + axis_label(y_max) + "</text>\n";
    svg += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + axis_label(py(y_min) + 4) +
           "\" text-anchor=\"end\">" + axis_label(y_min) + "</text>\n";
    const std::string x_axis_y = axis_label(y0 + top + plot_height + 16);
    svg +=
        "<text x=\"" + std::to_string(left) + "\" y=\"" + x_axis_y + "\">" + axis_label(x_min) + "</text>\n";
    svg += "<text x=\"" + axis_label(left + plot_width) + "\" y=\"" + x_axis_y + "\" text-anchor=\"end\">" +
           axis_label(x_max) + "</text>\n";
    svg += "<text x=\"" + axis_label(left + plot_width / 2) + "\" y=\"" + x_axis_y +
           "\" text-anchor=\"middle\">" + xml_escaped(x_label) + "</text>\n";
    if (points.empty()) continue;
    svg += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
    const std::size_t stride =
        std::max<std::size_t>(1, points.size() / static_cast<std::size_t>(2 * plot_width));
    auto draw = [&](const std::pair<double, double>& point) {
      char text[48];
      std::snprintf(text, sizeof text, "%.1f,%.1f ", px(point.first), py(point.second));
      svg += text;
    };
    for (std::size_t i = 0; i < points.size(); i += stride) draw(points[i]);
    if ((points.size() - 1) % stride != 0) draw(points.back());  // the last point, however the stride falls
    svg += "\"/>\n";
  }
  svg += "</svg>\n";
  return svg;
}

/// Writes svg_plot(...) to `file`; an Error naming the file when it cannot be written.
inline void write_svg_plot(const std::filesystem::path& file, const std::vector<PlotSeries>& series,
                           int width, int panel_height, const std::string& x_label) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << svg_plot(series, width, panel_height, x_label);
  out.close();
  if (!out) throw Error("cannot write the plot to " + file.string());
}

}  // namespace batchpipe::detail
