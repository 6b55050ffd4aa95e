// The benchmark workloads of the design brief, batchpipe beside its peers in one binary and one
// run (peers.hpp: a hand-written LibTorch loop, LibTorch's DataLoader, the model alone):
//   W0 overhead: no-op actions on a large index: cost per batch and per action dispatch
//                (benchmark_overhead has the Google Benchmark micro figures).
//   W1 prep:     normalize, flip (p = 0.5), random crop 28x28 after padding 2; one epoch of
//                Fashion-MNIST (60,000 items), batch 256, shuffled.
//   W2 train:    W1, then an MLP 784-256-10 (ReLU), Adam, lr 1e-3, cross-entropy; one epoch.
// Each figure is the median of --repeats runs after a warm-up run, in items/s; rows are prefetch
// 0, 1, 2, 4 with a budget of one thread and of every core; batchpipe and its peers take turns,
// one run each per round, and a ratio is the median of the rounds' ratios. --json writes the same
// as JSON.

#include "../common/example.hpp"
#include "peers.hpp"

#include <batchpipe/batchpipe.hpp>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using benchmark_peers::Model;

struct BenchBatch : bp::ImagesBatchBase<BenchBatch> {
  ACTION(nothing)() {}
  MODEL(mlp)() { return benchmark_peers::make_model(); }
  ACTION(train, .model = "mlp", .singleton = true)(Model& m) {
    bp::train_step(m.module, m.optimizer, get("images"), get("labels"));
  }
};

struct Settings {
  std::filesystem::path data = "/usr/share/datasets/fashion-mnist";
  int repeats = 5;
  std::size_t items = 60000;
  std::size_t batch_size = 256;
  std::string workloads = "W0,W1,W2";
  std::filesystem::path json;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

/// The median over the rounds of ours[r] / theirs[r]: each ratio compares two runs made a minute
/// apart at most, so a machine whose speed drifts over the benchmark's minutes moves it less than
/// the ratio of the two medians.
double median_ratio(const std::vector<double>& ours, const std::vector<double>& theirs) {
  std::vector<double> ratios;
  for (std::size_t r = 0; r < std::min(ours.size(), theirs.size()); ++r)
    ratios.push_back(ours[r] / theirs[r]);
  return median(std::move(ratios));
}

/// The median of `repeats` measurements after one warm-up.
double median_of(int repeats, const std::function<double()>& measure) {
  (void)measure();
  std::vector<double> values;
  for (int i = 0; i < repeats; ++i) values.push_back(measure());
  return median(std::move(values));
}

/// A peer with a budget of one thread: LibTorch's intra-op threads and OpenBLAS's pool set to one
/// while it runs, as a run of batchpipe with `threads = 1` sets them. With every core a peer runs
/// with LibTorch's and OpenBLAS's own defaults, as a program that sets nothing does.
double with_threads(std::size_t threads, std::size_t all, const std::function<double()>& measure) {
  if (threads == all) return measure();
  // batchpipe's own leases, which put both counts back when the measurement ends.
  const bp::detail::IntraOpThreadsLease intra_op(threads);
  const bp::detail::BlasThreadsLease blas(static_cast<int>(threads));
  return measure();
}

/// The BLAS behind LibTorch's matrix products, which sets W2's pace: OpenBLAS's kernels and pool.
std::string blas_description() {
  const auto& api = bp::detail::OpenBlasApi::get();
  if (!api.get_num_threads) return "not OpenBLAS";
  std::string text = "OpenBLAS";
  if (api.get_corename) text += std::string(", kernels ") + api.get_corename();
  if (api.get_parallel) text += api.get_parallel() == 1 ? ", own pthreads pool" : ", OpenMP or sequential";
  return text + ", " + std::to_string(api.get_num_threads()) + " threads";
}

/// One row of the table: a workload at a prefetch and a thread budget, batchpipe and its peers.
struct Row {
  std::string workload;
  std::size_t prefetch = 0;
  std::size_t threads = 0;                         // the budget
  std::map<std::string, double> items_per_second;  // "batchpipe", "hand_loop", ...
  std::map<std::string, double> ratios;            // batchpipe / each peer, median of the rounds'
  double page_faults_per_batch = 0;                // batchpipe's, in its last measured run
};

/// The process's minor page faults so far: memory taken from the system and touched. A pipeline
/// that reuses its memory from batch to batch adds few per batch.
long minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

void print_rows(const std::vector<Row>& rows) {
  const std::vector<std::string> peers = {"hand_loop", "data_loader", "model_alone"};
  std::printf("\n%-8s %8s %7s %12s %7s", "workload", "prefetch", "threads", "batchpipe", "faults");
  for (const auto& peer : peers) std::printf(" %12s %6s", peer.c_str(), "ratio");
  std::printf("\n");
  for (const auto& row : rows) {
    const double ours = row.items_per_second.at("batchpipe");
    std::printf("%-8s %8zu %7zu %12.0f %7.1f", row.workload.c_str(), row.prefetch, row.threads, ours,
                row.page_faults_per_batch);
    for (const auto& peer : peers) {
      const auto found = row.items_per_second.find(peer);
      if (found == row.items_per_second.end()) {
        std::printf(" %12s %6s", "-", "");
      } else {
        std::printf(" %12.0f %5.2fx", found->second, row.ratios.at(peer));
      }
    }
    std::printf("\n");
  }
}

void write_json_numbers(std::ostream& out, const std::map<std::string, double>& numbers) {
  const char* separator = "";
  for (const auto& [name, value] : numbers) {
    out << separator << "\"" << name << "\": " << value;
    separator = ", ";
  }
}

void write_json(const std::filesystem::path& file, const Settings& s, const std::map<std::string, double>& w0,
                const std::vector<Row>& rows) {
  std::ofstream out(file);
  if (!out) throw bp::FileError(file, "cannot write");
  out << "{\n  \"items\": " << s.items << ",\n  \"batch_size\": " << s.batch_size
      << ",\n  \"repeats\": " << s.repeats
      << ",\n  \"hardware_threads\": " << std::thread::hardware_concurrency()
      << ",\n  \"libtorch_intra_op_default\": " << at::get_num_threads() << ",\n  \"blas\": \""
      << blas_description() << "\",\n  \"w0\": {";
  const char* separator = "";
  for (const auto& [name, value] : w0) {
    out << separator << "\n    \"" << name << "\": " << value;
    separator = ",";
  }
  out << "\n  },\n  \"rows\": [";
  separator = "";
  for (const auto& row : rows) {
    out << separator << "\n    {\"workload\": \"" << row.workload << "\", \"prefetch\": " << row.prefetch
        << ", \"threads\": " << row.threads << ", \"page_faults_per_batch\": " << row.page_faults_per_batch
        << ", \"items_per_second\": {";
    write_json_numbers(out, row.items_per_second);
    out << "}, \"ratios\": {";
    write_json_numbers(out, row.ratios);
    out << "}}";
    separator = ",";
  }
  out << "\n  ]\n}\n";
}

/// W0: microseconds per batch of an empty pipeline, and per dispatch of a no-op action.
std::map<std::string, double> run_w0(const Settings& s) {
  // 16 times --items (960,000 by default) and 100 no-op actions: enough to rise above the noise.
  const std::size_t items = 16 * s.items;
  bp::Dataset<BenchBatch> big(items);
  auto empty = big.pipeline();
  auto hundred = empty;
  for (int i = 0; i < 100; ++i) hundred = hundred.nothing();
  std::map<std::string, double> figures;
  for (std::size_t prefetch : {0, 2}) {
    const bp::RunOptions options{.batch_size = s.batch_size, .shuffle = 1, .prefetch = prefetch};
    const double batches = static_cast<double>(items) / static_cast<double>(s.batch_size);
    const double base = median_of(s.repeats, [&] { return empty.run(options).seconds; });
    const double with_actions = median_of(s.repeats, [&] { return hundred.run(options).seconds; });
    const std::string suffix = "_prefetch_" + std::to_string(prefetch);
    figures["us_per_batch" + suffix] = 1e6 * base / batches;
    figures["us_per_dispatch" + suffix] = 1e6 * (with_actions - base) / (batches * 100);
    std::printf("W0 prefetch %zu: %.2f us per batch, %.3f us per action dispatch\n", prefetch,
                figures["us_per_batch" + suffix], figures["us_per_dispatch" + suffix]);
  }
  return figures;
}

/// W1 or W2 at every prefetch and budget, with the peers at each budget. The contenders of a
/// budget take turns, one run each per round (the first round is a warm-up), so that a machine
/// whose load drifts during the minutes of a benchmark slows them alike and the ratios hold.
void run_pipeline_workload(const std::string& workload, const Settings& s,
                           const benchmark_peers::Fashion& data, const bp::Pipeline<BenchBatch>& pipeline,
                           std::vector<Row>& rows) {
  const bool train = workload == "W2";
  const auto batch = static_cast<int64_t>(s.batch_size);
  const auto per_second = [&](double seconds) { return static_cast<double>(data.size()) / seconds; };
  const std::size_t all = std::max(1u, std::thread::hardware_concurrency());
  const std::vector<std::size_t> prefetches = {0, 1, 2, 4};
  for (const std::size_t threads : {std::size_t{1}, all}) {
    std::vector<std::pair<std::string, std::function<double()>>> contenders = {
        {"hand_loop", [&] { return benchmark_peers::hand_loop(data, batch, train); }},
        {"data_loader", [&] { return benchmark_peers::data_loader(data, batch, train); }}};
    if (train)
      contenders.emplace_back("model_alone", [&] { return benchmark_peers::model_alone(data, batch); });
    for (auto& contender : contenders) {
      contender.second = [&, measure = contender.second] { return with_threads(threads, all, measure); };
    }
    std::map<std::size_t, double> faults_per_batch;
    for (const std::size_t prefetch : prefetches) {
      const bp::RunOptions options{
          .batch_size = s.batch_size, .shuffle = 7, .prefetch = prefetch, .threads = threads};
      contenders.emplace_back("prefetch " + std::to_string(prefetch), [&, options, prefetch] {
        BenchBatch::models().reset();  // each run trains a fresh model
        const long faults_before = minor_page_faults();
        const auto stats = pipeline.run(options);
        faults_per_batch[prefetch] =
            static_cast<double>(minor_page_faults() - faults_before) / static_cast<double>(stats.batches);
        return per_second(stats.seconds);
      });
    }
    std::map<std::string, std::vector<double>> samples;
    for (int round = 0; round <= s.repeats; ++round) {
      for (const auto& [name, measure] : contenders) {
        const double value = measure();
        if (round > 0) samples[name].push_back(value);
      }
    }
    std::map<std::string, double> peers;
    for (const auto& [name, measure] : contenders) {
      if (!name.starts_with("prefetch")) peers[name] = median(samples[name]);
    }
    for (const std::size_t prefetch : prefetches) {
      Row row{workload, prefetch, threads, peers, {}, faults_per_batch[prefetch]};
      const auto& ours = samples["prefetch " + std::to_string(prefetch)];
      row.items_per_second["batchpipe"] = median(ours);
      for (const auto& [peer, items_per_second] : peers) row.ratios[peer] = median_ratio(ours, samples[peer]);
      std::printf("%s prefetch %zu threads %zu: %.0f items/s, %.1f page faults per batch\n", workload.c_str(),
                  prefetch, threads, row.items_per_second["batchpipe"], row.page_faults_per_batch);
      rows.push_back(std::move(row));
    }
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{
      "batchpipe's benchmark workloads W0, W1, W2, beside a hand-written loop, LibTorch's "
      "DataLoader and the model alone"};
  app.add_option("--data", s.data, "folder of the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--repeats", s.repeats, "measurements per figure (after a warm-up); the median is kept")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--items", s.items, "items of Fashion-MNIST used (a smaller slice runs faster)")
      ->check(CLI::Range(1, 60000))
      ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "items per batch")
      ->check(CLI::Range(1, 60000))
      ->capture_default_str();
  app.add_option("--workloads", s.workloads, "which workloads to run, comma-separated")
      ->capture_default_str();
  app.add_option("--json", s.json, "also write the figures to this JSON file");
  if (const auto exit_code = example::parse_command_line(app, argc, argv)) return *exit_code;
  const auto wants = [&](const std::string& workload) {
    return s.workloads.find(workload) != std::string::npos;
  };
  auto check = [&] {
    example::check_data_folder(s.data, {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"});
    if (!s.json.empty()) example::check_output_file("--json", s.json);
    if (!wants("W0") && !wants("W1") && !wants("W2")) {
      throw example::UsageError("--workloads names none of W0, W1, W2");
    }
  };
  return example::run("benchmark", check, [&] {
    std::printf("%u hardware threads; LibTorch: %d intra-op threads by default; BLAS: %s\n",
                std::thread::hardware_concurrency(), at::get_num_threads(), blas_description().c_str());
    // The data first: --items above what it holds stops the program before any workload runs.
    const bool pipelines = wants("W1") || wants("W2");
    benchmark_peers::Fashion data;
    if (pipelines) {
      const auto n = static_cast<int64_t>(s.items);
      const auto images = bp::io::read_idx(s.data / "train-images-idx3-ubyte.gz");
      const auto labels = bp::io::read_idx(s.data / "train-labels-idx1-ubyte.gz");
      example::check_items("--items", s.items, std::min(images.size(0), labels.size(0)));
      data = {images.narrow(0, 0, n).contiguous(), labels.narrow(0, 0, n).to(torch::kLong)};
    }
    std::map<std::string, double> w0;
    if (wants("W0")) w0 = run_w0(s);

    std::vector<Row> rows;
    if (pipelines) {
      bp::Dataset<BenchBatch> fashion(s.items, {{"images", data.images}, {"labels", data.labels}});
      auto prep = fashion.pipeline()
                      .normalize(benchmark_peers::fashion_mean, benchmark_peers::fashion_std, 1 / 255.f)
                      .flip(0.5)
                      .crop(28, 28, benchmark_peers::crop_padding);
      if (wants("W1")) run_pipeline_workload("W1", s, data, prep, rows);
      if (wants("W2")) run_pipeline_workload("W2", s, data, prep.train(), rows);
      print_rows(rows);
    }
    if (!s.json.empty()) write_json(s.json, s, w0, rows);
  });
}
