// docs/progress.md: a progress bar on a terminal, and a plot of pipeline variables.
#include <batchpipe/batchpipe.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

struct Steps : bp::Batch<Steps> {
  ACTION(learn, .singleton = true)() {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    variable<double>("loss").update([&](double& loss) { loss = 0.9 * loss + 0.1 / (1.0 + number()); });
    variable<bp::Accuracy>("accuracy").update([&](bp::Accuracy& a) {
      a.total += static_cast<std::int64_t>(size());
      a.correct += static_cast<std::int64_t>(size() * number() / (number() + 5));
    });
  }
};

int main() {
  const auto plot = std::filesystem::temp_directory_path() / "batchpipe_progress_example.svg";
  const auto training = bp::Dataset<Steps>(4000)
                            .pipeline()
                            .init_variable("loss", 1.0)
                            .init_variable("accuracy", bp::Accuracy{})
                            .learn();
  // On a terminal, stderr shows a bar redrawn in place; in a log or a pipe, nothing.
  const auto stats =
      training.run({.batch_size = 50,
                    .n_epochs = 2,
                    .progress = bp::Progress{.variables = {"loss", "accuracy"}, .plot = plot}});
  std::cout << stats.batches << " batches; plot written to " << plot << " ("
            << std::filesystem::file_size(plot) << " bytes)\n";
  std::ifstream svg(plot);
  std::string first_line;
  std::getline(svg, first_line);
  std::filesystem::remove(plot);
  return stats.batches == 160 && first_line.starts_with("<?xml") ? 0 : 1;
}
