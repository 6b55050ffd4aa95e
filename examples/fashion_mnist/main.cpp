// Train and evaluate a classifier on Fashion-MNIST with batchpipe: IDX files, the ready image
// actions (normalize, flip, crop), a model defined in the batch class, pipeline variables for
// the loss and the accuracy, checkpoints, prefetch. `fashion_mnist --help` lists the flags.
//
// The last line on stdout is `test_accuracy: 0.NNNN`, on the 10,000 test images. Exit codes:
// examples/common/example.hpp.

#include "../common/example.hpp"
#include "../common/fashion.hpp"

#include <batchpipe/batchpipe.hpp>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace fashion;

struct Settings {
  std::filesystem::path data = "/usr/share/datasets/fashion-mnist";
  std::string model = "mlp";
  std::size_t epochs = 10;
  std::size_t batch_size = 128;
  std::size_t prefetch = 2;
  std::uint64_t seed = 42;
  std::size_t threads = 0;
  std::size_t intra_op_threads = 0;
  double learning_rate = 1e-3;
  double lr_decay = 0.75;
  std::string augment = "flip";
  std::string device = "cpu";
  std::filesystem::path save, load, plot;
  bool quiet = false, profile = false, distributed = false;
};

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"Train and evaluate a Fashion-MNIST classifier with batchpipe"};
  app.add_option("--data", s.data, "folder of the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--model", s.model, "network: mlp or cnn")
      ->check(CLI::IsMember({"mlp", "cnn"}))
      ->capture_default_str();
  app.add_option("--epochs", s.epochs, "training epochs (0: evaluate only)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "items per batch")
      ->check(CLI::Range(1, 60000))
      ->capture_default_str();
  app.add_option("--prefetch", s.prefetch, "batches prepared ahead")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  app.add_option("--seed", s.seed, "seed of the shuffle, the augmentation and the weights")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--threads", s.threads, "thread budget (0: all cores)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--intra-op-threads", s.intra_op_threads,
                 "LibTorch threads per operation (0: derived from the thread budget; with --model cnn, the "
                 "budget); results do not depend on --prefetch either way")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--lr", s.learning_rate, "learning rate of Adam")
      ->check(CLI::Range(1e-9, 10.0))
      ->capture_default_str();
  app.add_option("--lr-decay", s.lr_decay, "the learning rate is multiplied by this after each epoch")
      ->check(CLI::Range(1e-9, 1.0))
      ->capture_default_str();
  app.add_option("--device", s.device, "cpu, cuda, cuda:1, ...")->capture_default_str();
  app.add_option("--augment", s.augment,
                 "training augmentation: none, flip (left-right, p = 0.5) or flip-crop (and random 28x28 "
                 "crops after padding 2)")
      ->check(CLI::IsMember({"none", "flip", "flip-crop"}))
      ->capture_default_str();
  app.add_option("--save", s.save,
                 "save the model to this checkpoint after training (its folder must exist and be writable)");
  app.add_option("--load", s.load, "load the model from this checkpoint before training")
      ->check(CLI::ExistingFile);
  app.add_option("--plot", s.plot,
                 "write an SVG plot of the running loss and training accuracy over the training (its folder "
                 "must exist and be writable); the accuracy costs a forward pass per batch");
  app.add_flag("--profile", s.profile, "print the time of each action of the training run");
  app.add_flag("--quiet", s.quiet, "no progress bar");
  app.add_flag("--distributed", s.distributed,
               "train data-parallel as one rank of a job that RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT "
               "describe (scripts/launch-local.sh -n N -- fashion_mnist --distributed)");
  if (const auto exit_code = example::parse_command_line(app, argc, argv)) return *exit_code;

  torch::Device device(torch::kCPU);
  auto check = [&] {
    example::check_data_folder(s.data, {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"});
    device = example::parse_device(s.device);
    example::check_output_file("--save", s.save);
    example::check_output_file("--plot", s.plot);
  };
  return example::run("fashion_mnist", check, [&] {
    // One rank of a job, or a world of one (then every collective is the identity).
    const bp::Distributed job = s.distributed ? bp::Distributed::from_environment() : bp::Distributed();
    if (s.threads == 0 && job.world_size() > 1) s.threads = job.threads_per_process();
    // The CNN's convolutions run on LibTorch's own threads, not in the BLAS that batchpipe gives
    // the budget by default: they get the budget (docs/pipelines-and-prefetch.md#threads).
    if (s.intra_op_threads == 0 && s.model == "cnn") {
      s.intra_op_threads = s.threads ? s.threads : std::max(1u, std::thread::hardware_concurrency());
    }
    bp::Config model_config;
    model_config.set("network", s.model)
        .set("lr", s.learning_rate)
        .set("device", device.str())
        .set("seed", s.seed);

    const auto train_data = load_split(s.data, "train");
    const auto test_data = load_split(s.data, "t10k");

    // The pipelines: lazy until run.
    auto prepare = [&](const bp::Dataset<FashionBatch>& data, const std::string& augment) {
      auto p = data.pipeline().normalize(0.2860f, 0.3530f, 1 / 255.f);
      if (augment != "none") p = p.flip(0.5);
      if (augment == "flip-crop") p = p.crop(28, 28, 2);
      return p.to_device(device);
    };
    // The training pipeline holds the model's instance; evaluation uses the same, trained one.
    // One run covers every epoch: each epoch reshuffles, and decay_lr lowers the learning rate
    // at the first batch of each new epoch.
    auto training = prepare(train_data, s.augment)
                        .init_model("classifier", model_config)
                        .init_variable("loss", 0.0)
                        .init_variable("epoch", std::size_t{0})
                        .decay_lr(s.lr_decay)
                        .train(job);
    std::vector<std::string> shown{"loss"};
    if (!s.plot.empty()) {  // the running accuracy on the training batches, after each step
      training = training.init_variable("accuracy", bp::Accuracy{}).evaluate();
      shown.push_back("accuracy");
    }
    auto evaluation = prepare(test_data, "none")
                          .with_model(training.model_instance("classifier"))
                          .init_variable("accuracy", bp::Accuracy{})
                          .evaluate();
    if (!s.load.empty()) bp::load_model(training, "classifier", s.load);
    // Every rank starts from rank 0's weights.
    job.broadcast_parameters(training.model<Model>("classifier")->module);

    if (s.epochs > 0) {
      const auto stats =
          training.run({.batch_size = s.batch_size,
                        .n_epochs = s.epochs,
                        .shuffle = s.seed,
                        .prefetch = s.prefetch,
                        .threads = s.threads,
                        .intra_op_threads = s.intra_op_threads,
                        // A GPU step leaves the CPU to the batches made ahead.
                        .prepare_during_steps = device.is_cpu() ? std::nullopt : std::optional(true),
                        .profile = s.profile,
                        .progress = bp::Progress{.variables = shown,
                                                 .stream = s.quiet || !job.is_main() ? nullptr : stderr,
                                                 .plot = job.is_main() ? s.plot : ""},
                        .shard = job.shard()});
      // Items of every rank over the slowest rank's time.
      const double items = job.sum(static_cast<double>(stats.items));
      const double slowest = job.max(stats.seconds);
      if (job.is_main()) {
        std::cout << "training: " << s.epochs << " epochs, loss "
                  << training.variables().value<double>("loss") << ", " << static_cast<long>(items / slowest)
                  << " items/s" << std::endl;
      }
      if (stats.profile && job.is_main()) std::cout << stats.profile->table();
    }
    if (!s.save.empty()) job.on_main([&] { bp::save_model(training, "classifier", s.save); });

    training.model<Model>("classifier")->module->eval();
    evaluation.run({.batch_size = 1000,
                    .prefetch = s.prefetch,
                    .threads = s.threads,
                    .intra_op_threads = s.intra_op_threads,
                    .shard = job.shard()});
    // Each rank evaluated its shard of the test set: the counts of all.
    const bp::Accuracy accuracy = job.sum(evaluation.variables().value<bp::Accuracy>("accuracy"));
    if (job.is_main()) std::printf("test_accuracy: %.4f\n", accuracy.value());
  });
}
