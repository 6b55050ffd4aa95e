#pragma once
// The progress notifier behind RunOptions::progress: a bar redrawn in place on a terminal, and a
// record of the chosen variables for the plot written at the run's end.

#include <batchpipe/core/detail/batch_sampler.hpp>
#include <batchpipe/core/detail/svg_plot.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/run_options.hpp>
#include <batchpipe/core/variables.hpp>
#include <batchpipe/detail/strings.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// How much a run will deliver when its epochs are counted: batches (0: not known ahead) and items.
struct PlannedRun {
  std::size_t batches = 0;
  std::size_t items = 0;
};

/// What the sampler will cut `n_items` into under `options`; nothing for an endless run.
inline std::optional<PlannedRun> planned_run(std::size_t n_items, const RunOptions& options) {
  if (!options.n_epochs || options.batch_size == 0) return std::nullopt;
  const EpochLayout epoch(n_items, options.batch_size, options.drop_last, options.shard.value_or(Shard{}));
  return PlannedRun{epoch.batches() * *options.n_epochs, epoch.items() * *options.n_epochs};
}

/// "1:02:03" or "2:03".
inline std::string clock_text(double seconds) {
  const long total = std::lround(std::max(0.0, seconds));
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(text, sizeof text, "%ld:%02ld", total / 60, total % 60);
  }
  return text;
}

/// One line of the bar: progress, items and batches done, rate, time left, variables' values.
inline std::string progress_line(const RunStats& done, const std::optional<PlannedRun>& planned,
                                 double seconds,
                                 const std::vector<std::pair<std::string, std::optional<double>>>& values) {
  std::string line;
  char text[160];
  const double rate = seconds > 0 ? static_cast<double>(done.items) / seconds : 0.0;
  const std::size_t batches_seen = done.batches + done.skipped;
  if (planned && (planned->batches > 0 || planned->items > 0)) {
    // By batches when they are known ahead (skipped ones count as done), else by items (after a
    // rebatch or a merge).
    const double fraction = std::min(
        1.0, planned->batches > 0 ? static_cast<double>(batches_seen) / static_cast<double>(planned->batches)
                                  : static_cast<double>(done.items) / static_cast<double>(planned->items));
    constexpr int width = 24;
    const int filled = static_cast<int>(fraction * width);
    line += '[' + std::string(static_cast<std::size_t>(filled), '=') +
            std::string(static_cast<std::size_t>(width - filled), ' ') + ']';
    const double left = fraction > 0 ? seconds * (1 - fraction) / fraction : 0.0;
    const std::string batches = planned->batches > 0 ? "/" + std::to_string(planned->batches) : "";
    std::snprintf(text, sizeof text, " %3d%% %zu/%zu items %zu%s batches %.0f items/s %s left",
                  static_cast<int>(100 * fraction), done.items, planned->items, batches_seen, batches.c_str(),
                  rate, clock_text(left).c_str());
  } else {
    std::snprintf(text, sizeof text, "%zu items %zu batches %.0f items/s %s", done.items, batches_seen, rate,
                  clock_text(seconds).c_str());
  }
  line += text;
  if (done.skipped) line += " (" + std::to_string(done.skipped) + " skipped)";
  for (const auto& [name, value] : values) {
    if (!value) continue;
    std::snprintf(text, sizeof text, " %.4g", *value);
    line += "  " + printable(name) + text;  // a name is the user's: no escape sequence reaches the terminal
  }
  return line;
}

/// Follows one run: called on the consumer's thread after each batch, and once at the end.
class ProgressNotifier {
 public:
  ProgressNotifier(Progress settings, std::optional<PlannedRun> planned, Variables variables)
      : settings_(std::move(settings)),
        planned_(planned),
        variables_(std::move(variables)),
        on_terminal_(settings_.stream && isatty(fileno(settings_.stream))),
        history_(settings_.variables.size()) {
    for (const auto& name : settings_.variables) {
      if (!variables_.contains(name)) {
        throw Error("RunOptions::progress: no pipeline variable '" + name + "' to show (variables: " +
                    join_names(variables_.names(), [](const auto& n) { return n; }) + ")");
      }
      if (!variables_.is_numeric(name)) {
        throw Error(
            "RunOptions::progress: pipeline variable '" + name +
            "' is not a number to show (numbers, types with a numeric value(), vectors of numbers are)");
      }
    }
  }

  /// After each batch delivered or skipped: records the variables and redraws the bar when it is due.
  void update(const RunStats& stats, double seconds) {
    const bool draw_due =
        on_terminal_ && (last_draw_ < 0 || seconds - last_draw_ >= settings_.refresh_seconds);
    if (!draw_due && settings_.plot.empty()) return;  // nothing to show or keep: no variable read
    const auto values = current_values();
    for (std::size_t i = 0; i < values.size() && !settings_.plot.empty(); ++i) {
      // A NaN or infinite value (a diverged loss) has no place on a plot.
      if (values[i].second && std::isfinite(*values[i].second))
        history_[i].emplace_back(static_cast<double>(stats.batches + stats.skipped), *values[i].second);
    }
    if (draw_due) draw(stats, seconds, values);
  }

  /// At the run's end, with an error or not: the bar's last state and the plot.
  void finish(const RunStats& stats, double seconds) {
    if (on_terminal_) {
      draw(stats, seconds, current_values());
      std::fputc('\n', settings_.stream);
      std::fflush(settings_.stream);
    }
    if (!settings_.plot.empty()) {
      std::vector<PlotSeries> series;
      for (std::size_t i = 0; i < history_.size(); ++i)
        series.push_back({settings_.variables[i], history_[i]});
      write_svg_plot(settings_.plot, series, settings_.plot_width, settings_.plot_height, "batches");
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<double>>> current_values() const {
    std::vector<std::pair<std::string, std::optional<double>>> values;
    for (const auto& name : settings_.variables) values.emplace_back(name, variables_.number(name));
    return values;
  }

  void draw(const RunStats& stats, double seconds,
            const std::vector<std::pair<std::string, std::optional<double>>>& values) {
    // \r and "erase to the end of the line": the new line overwrites the old in place.
    std::fprintf(settings_.stream, "\r%s\x1b[K", progress_line(stats, planned_, seconds, values).c_str());
    std::fflush(settings_.stream);
    last_draw_ = seconds;
  }

  Progress settings_;
  std::optional<PlannedRun> planned_;
  Variables variables_;
  bool on_terminal_;
  double last_draw_ = -1;
  std::vector<std::vector<std::pair<double, double>>> history_;  // per variable: (batches, value)
};

}  // namespace batchpipe::detail
