// The benchmark workloads of the design brief, batchpipe beside its peers in one binary and one
// run (peers.hpp: a hand-written LibTorch loop, LibTorch's DataLoader, the model alone):
//   W0 overhead: no-op actions on a large index: cost per batch and per action dispatch
//                (benchmark_overhead has the Google Benchmark micro figures).
//   W1 prep:     normalize, flip (p = 0.5), random crop 28x28 after padding 2; one epoch of
//                Fashion-MNIST (60,000 items), batch 256, shuffled.
//   W2 train:    W1, then an MLP 784-256-10 (ReLU), Adam, lr 1e-3, cross-entropy; one epoch.
//   W3 photos:   a folder of photographs (--folder): decode, random resized crop 224x224, flip,
//                per-channel normalize; one epoch (photos.hpp, with its peers).
// Each figure is the median of --repeats runs after a warm-up run, in items/s; rows are prefetch
// 0, 1, 2, 4 with a budget of one thread and of every core; batchpipe and its peers take turns,
// one run each per round, and a ratio is the median of the rounds' ratios. --json writes the same
// as JSON.

#include "../common/example.hpp"
#include "peers.hpp"
#include "photos.hpp"

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
  std::filesystem::path folder;   // W3's photographs, class folders
  std::size_t files = 0;          // W3's files used (0: all)
  int64_t min_side = 224;         // W3: JPEGs decoded at the smallest DCT scale keeping this side
  std::filesystem::path gallery;  // a picture of W3's actions instead of the figures
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
  long peak_mib = 0;                               // batchpipe's resident memory at its peak (W3)
};

/// The process's minor page faults so far: memory taken from the system and touched. A pipeline
/// that reuses its memory from batch to batch adds few per batch.
long minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

void print_rows(const std::vector<Row>& rows) {
  std::vector<std::string> peers;  // in the order the rows name them
  for (const auto& row : rows) {
    for (const auto& [name, value] : row.ratios) {
      if (std::find(peers.begin(), peers.end(), name) == peers.end()) peers.push_back(name);
    }
  }
  const bool memory = std::any_of(rows.begin(), rows.end(), [](const Row& row) { return row.peak_mib > 0; });
  std::printf("\n%-8s %8s %7s %12s %7s", "workload", "prefetch", "threads", "batchpipe",
              memory ? "MiB" : "faults");
  for (const auto& peer : peers) std::printf(" %12s %6s", peer.c_str(), "ratio");
  std::printf("\n");
  for (const auto& row : rows) {
    const double ours = row.items_per_second.at("batchpipe");
    std::printf("%-8s %8zu %7zu %12.0f %7.1f", row.workload.c_str(), row.prefetch, row.threads, ours,
                memory ? static_cast<double>(row.peak_mib) : row.page_faults_per_batch);
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
        << ", \"peak_resident_mib\": " << row.peak_mib << ", \"items_per_second\": {";
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

using Contenders = std::vector<std::pair<std::string, std::function<double()>>>;
const std::vector<std::size_t> prefetches = {0, 1, 2, 4};

/// The rows of one workload at one thread budget: the peers and batchpipe at each prefetch
/// (`ours(prefetch)`, items/s) take turns, one run each per round, the first round a warm-up, so
/// that a machine whose load drifts during the minutes of a benchmark slows them alike and the
/// ratios hold. `faults` and `peak_mib` hold batchpipe's figures by prefetch.
void compare(const std::string& workload, const Settings& s, std::size_t threads, Contenders contenders,
             const std::function<double(std::size_t)>& ours, const std::map<std::size_t, double>& faults,
             const std::map<std::size_t, long>& peak_mib, std::vector<Row>& rows) {
  const std::size_t peers_count = contenders.size();
  for (const std::size_t prefetch : prefetches) {
    contenders.emplace_back("prefetch " + std::to_string(prefetch),
                            [&ours, prefetch] { return ours(prefetch); });
  }
  std::map<std::string, std::vector<double>> samples;
  for (int round = 0; round <= s.repeats; ++round) {
    for (const auto& [name, measure] : contenders) {
      const double value = measure();
      if (round > 0) samples[name].push_back(value);
    }
  }
  std::map<std::string, double> peers;
  for (std::size_t i = 0; i < peers_count; ++i)
    peers[contenders[i].first] = median(samples[contenders[i].first]);
  for (const std::size_t prefetch : prefetches) {
    const auto find = [&](const auto& figures) { return figures.count(prefetch) ? figures.at(prefetch) : 0; };
    Row row{workload, prefetch, threads, peers, {}, static_cast<double>(find(faults)), find(peak_mib)};
    const auto& figures = samples["prefetch " + std::to_string(prefetch)];
    row.items_per_second["batchpipe"] = median(figures);
    for (const auto& [peer, items_per_second] : peers)
      row.ratios[peer] = median_ratio(figures, samples[peer]);
    std::printf("%s prefetch %zu threads %zu: %.0f items/s, %.1f page faults per batch\n", workload.c_str(),
                prefetch, threads, row.items_per_second["batchpipe"], row.page_faults_per_batch);
    rows.push_back(std::move(row));
  }
  std::fflush(stdout);
}

/// W1 or W2 at every prefetch and budget, with the peers at each budget.
void run_pipeline_workload(const std::string& workload, const Settings& s,
                           const benchmark_peers::Fashion& data, const bp::Pipeline<BenchBatch>& pipeline,
                           std::vector<Row>& rows) {
  const bool train = workload == "W2";
  const auto batch = static_cast<int64_t>(s.batch_size);
  const auto per_second = [&](double seconds) { return static_cast<double>(data.size()) / seconds; };
  const std::size_t all = std::max(1u, std::thread::hardware_concurrency());
  for (const std::size_t threads : {std::size_t{1}, all}) {
    Contenders contenders = {
        {"hand_loop", [&] { return benchmark_peers::hand_loop(data, batch, train); }},
        {"data_loader", [&] { return benchmark_peers::data_loader(data, batch, train); }}};
    if (train)
      contenders.emplace_back("model_alone", [&] { return benchmark_peers::model_alone(data, batch); });
    for (auto& contender : contenders) {
      contender.second = [&, measure = contender.second] { return with_threads(threads, all, measure); };
    }
    std::map<std::size_t, double> faults_per_batch;
    const auto ours = [&](std::size_t prefetch) {
      BenchBatch::models().reset();  // each run trains a fresh model
      const long faults_before = minor_page_faults();
      const auto stats =
          pipeline.run({.batch_size = s.batch_size, .shuffle = 7, .prefetch = prefetch, .threads = threads});
      faults_per_batch[prefetch] =
          static_cast<double>(minor_page_faults() - faults_before) / static_cast<double>(stats.batches);
      return per_second(stats.seconds);
    };
    compare(workload, s, threads, std::move(contenders), ours, faults_per_batch, {}, rows);
  }
}

/// W3 at every prefetch and budget, beside the hand loop and the decode alone (photos.hpp).
void run_photos_workload(const Settings& s, const bp::ImageFolder& folder, std::vector<Row>& rows) {
  const std::size_t all = std::max(1u, std::thread::hardware_concurrency());
  for (const std::size_t threads : {std::size_t{1}, all}) {
    const benchmark_photos::Epoch epoch{s.batch_size, threads, s.min_side};
    Contenders contenders = {
        {"hand_loop", [&] { return benchmark_photos::hand_loop_epoch(folder, epoch); }},
        {"decode_alone", [&] { return benchmark_photos::decode_ceiling_epoch(folder, epoch); }}};
    std::map<std::size_t, long> peak_mib;
    const auto ours = [&](std::size_t prefetch) {
      long peak = 0;
      const double figure = benchmark_photos::batchpipe_epoch(folder, epoch, prefetch, peak);
      peak_mib[prefetch] = std::max(peak_mib[prefetch], peak);
      return figure;
    };
    compare("W3", s, threads, std::move(contenders), ours, {}, peak_mib, rows);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{
      "batchpipe's benchmark workloads W0, W1, W2 (beside a hand-written loop, LibTorch's DataLoader and the "
      "model alone) and W3 (photographs, beside a hand-written loop and the decode alone)"};
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
  app.add_option("--folder", s.folder,
                 "W3: a folder of class folders of photographs (scripts/make-w3-folder.py)");
  app.add_option("--files", s.files, "W3: files used, from the start of the folder (0: all)")
      ->capture_default_str();
  app.add_option("--min-side", s.min_side,
                 "W3: JPEGs decoded at the smallest DCT scale keeping this side (0: whole images)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--gallery", s.gallery,
                 "W3: write a picture of its actions on a few files of --folder, and stop");
  if (const auto exit_code = example::parse_command_line(app, argc, argv)) return *exit_code;
  const auto wants = [&](const std::string& workload) {
    return s.workloads.find(workload) != std::string::npos;
  };
  auto check = [&] {
    if (wants("W1") || wants("W2")) {
      example::check_data_folder(s.data, {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"});
    }
    if (!s.json.empty()) example::check_output_file("--json", s.json);
    if (!wants("W0") && !wants("W1") && !wants("W2") && !wants("W3")) {
      throw example::UsageError("--workloads names none of W0, W1, W2, W3");
    }
    if ((wants("W3") || !s.gallery.empty()) && !std::filesystem::is_directory(s.folder)) {
      throw example::UsageError("W3 and --gallery need --folder, a folder of class folders of images (not '" +
                                s.folder.string() + "')");
    }
  };
  return example::run("benchmark", check, [&] {
    if (!s.gallery.empty())
      return benchmark_photos::write_gallery(bp::ImageFolder::from_folder(s.folder), s.gallery);
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
    }
    if (wants("W3")) {
      auto folder = bp::ImageFolder::from_folder(s.folder);
      if (s.files && s.files < folder.index.size()) {
        std::vector<std::size_t> first(s.files);
        for (std::size_t i = 0; i < s.files; ++i) first[i] = i;
        folder.index = folder.index.subset(first);  // its rows still address every label
      }
      std::printf("W3: %zu files in %zu classes, JPEGs decoded to a side of at least %ld (0: whole)\n",
                  folder.index.size(), folder.classes.size(), static_cast<long>(s.min_side));
      run_photos_workload(s, folder, rows);
    }
    if (!rows.empty()) print_rows(rows);
    if (!s.json.empty()) write_json(s.json, s, w0, rows);
  });
}
