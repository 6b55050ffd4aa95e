// MODEL: built once per class, on first use, shared by actions; the model directory.
#include "support.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

namespace {

std::atomic<int> builds{0};
std::atomic<bool> fail_next_build{false};

struct Counted {
  int serial;
  int uses = 0;
};

struct ModelBatch : bp::Batch<ModelBatch> {
  MODEL(counted)() {
    if (fail_next_build.exchange(false)) throw std::runtime_error("no GPU today");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // widen the race window
    return Counted{++builds};
  }
  MODEL(plain)() { return std::string("plain model"); }

  ACTION(use_a, .model = "counted", .singleton = true)(Counted& model) { ++model.uses; }
  ACTION(use_b, .model = "counted", .singleton = true)(Counted& model, int times) { model.uses += times; }
  ACTION(describe, .model = "plain")(const std::string& model) { set("description", model); }
};

}  // namespace

TEST_CASE("a model is built once even when 16 threads ask at once", "[models]") {
  auto& models = ModelBatch::models();
  models.reset();
  builds = 0;
  CHECK_FALSE(models.is_built("counted"));

  std::vector<std::shared_ptr<Counted>> got(16);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = models.get<Counted>("counted"); });
  }
  for (auto& thread : threads) thread.join();
  CHECK(builds == 1);
  for (const auto& model : got) CHECK(model.get() == got.front().get());
  CHECK(models.is_built("counted"));
}

TEST_CASE("actions share their model, built on first use", "[models]") {
  auto& models = ModelBatch::models();
  models.reset();
  builds = 0;
  bp::Dataset<ModelBatch> dataset(10);
  auto pipeline = dataset.pipeline().use_a().use_b(10).describe();
  CHECK(builds == 0);  // building the pipeline builds nothing
  pipeline.run({.batch_size = 2, .prefetch = 3});
  CHECK(builds == 1);
  CHECK(models.get<Counted>("counted")->uses == 5 * 11);
  CHECK(pipeline.next_batch({.batch_size = 3})->get<std::string>("description") == "plain model");
}

TEST_CASE("the model directory lists, reads typed and resets", "[models]") {
  auto& models = ModelBatch::models();
  models.reset();
  CHECK(models.names() == std::vector<std::string>{"counted", "plain"});
  auto list = models.list();
  REQUIRE(list.size() == 2);
  CHECK(list[1].type.find("string") != std::string::npos);
  CHECK_FALSE(list[1].built);

  auto first = models.get<Counted>("counted");
  models.reset("counted");
  auto second = models.get<Counted>("counted");
  CHECK(first.get() != second.get());
  CHECK(first->serial != second->serial);  // the old one lives on while someone holds it

  models.set("plain", std::string("loaded"));
  CHECK(*models.get<std::string>("plain") == "loaded");

  CHECK_THROWS_WITH(models.get<int>("counted"),
                    test::contains("model 'counted' of") &&
                        test::contains("is a (anonymous namespace)::Counted, not a int"));
  CHECK_THROWS_WITH(models.get<int>("cnn"), test::contains("has no model 'cnn' (models: counted, plain)"));
}

TEST_CASE("a model whose definition throws is not kept and is tried again", "[models]") {
  auto& models = ModelBatch::models();
  models.reset();
  fail_next_build = true;
  bp::Dataset<ModelBatch> dataset(4);
  try {
    // Without prefetch nothing runs after the failing batch, so nothing builds the model again.
    dataset.pipeline().use_a().run({.batch_size = 2});
    FAIL("the run should have thrown");
  } catch (const bp::ActionError& e) {
    CHECK(e.action() == "use_a");
    CHECK(test::full_message(e).find("building model 'counted'") != std::string::npos);
    CHECK(test::full_message(e).find("no GPU today") != std::string::npos);
  }
  CHECK_FALSE(models.is_built("counted"));
  test::finishes_within(std::chrono::seconds(30),
                        [&] { dataset.pipeline().use_a().run({.batch_size = 2, .prefetch = 1}); });
  CHECK(models.get<Counted>("counted")->uses == 2);
}

namespace {

/// A counter whose start and step come from the instance's config.
struct Counter {
  int64_t value;
  int64_t step;
};

using Linear = bp::TorchModel<torch::nn::Linear, torch::optim::SGD>;

struct InstanceBatch : bp::Batch<InstanceBatch> {
  MODEL(counter)(const bp::Config& config) {
    return Counter{config.get_or<int64_t>("start", 0), config.get_or<int64_t>("step", 1)};
  }
  MODEL(classifier)(const bp::Config& config) {
    torch::manual_seed(config.get_or<int64_t>("seed", 0));
    torch::nn::Linear net(2, 2);
    return Linear{net, torch::optim::SGD(net->parameters(), config.get_or("lr", 0.5))};
  }

  ACTION(count, .model = "counter", .singleton = true)(Counter& counter) {
    counter.value += counter.step;
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // let two pipelines interleave
  }
  ACTION(train, .model = "classifier", .singleton = true)(Linear& model) {
    bp::train_step(model.module, model.optimizer, get("x"), get("y"));
  }
  ACTION(evaluate, .model = "classifier")(Linear& model) {
    bp::evaluate(model.module, get("x"), get("y"), variable<bp::Accuracy>("accuracy"));
  }
};

/// Two separable classes: y = 1 when x0 + x1 > 0.
bp::Dataset<InstanceBatch> separable(int64_t n, uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  const at::Tensor x = torch::randn({n, 2});
  const at::Tensor y = (x.sum(1) > 0).to(torch::kLong);
  return bp::Dataset<InstanceBatch>(static_cast<std::size_t>(n), {{"x", x}, {"y", y}});
}

double accuracy_of(const bp::Pipeline<InstanceBatch>& evaluation) {
  auto pipeline = evaluation.init_variable("accuracy", bp::Accuracy{}).evaluate();
  pipeline.run({.batch_size = 64, .prefetch = 2});
  return pipeline.variables().value<bp::Accuracy>("accuracy").value();
}

}  // namespace

TEST_CASE(
    "a model definition takes its instance's config; two instances trained side by side stay independent",
    "[models][instances]") {
  auto& models = InstanceBatch::models();
  models.reset();
  bp::Dataset<InstanceBatch> dataset(40);
  const auto counting = dataset.pipeline().count();
  const auto tens = counting.init_model("counter", bp::Config::parse(R"({"start": 1000, "step": 10})"));
  const auto ones = counting.init_model("counter", bp::Config::parse(R"({"start": 0, "step": 1})"));

  std::thread other([&] { tens.run({.batch_size = 4, .n_epochs = 3, .prefetch = 2}); });
  ones.run({.batch_size = 4, .n_epochs = 2, .prefetch = 4});
  other.join();

  CHECK(tens.model<Counter>("counter")->value == 1000 + 30 * 10);  // 3 epochs of 10 batches
  CHECK(ones.model<Counter>("counter")->value == 20);
  CHECK(tens.model_instance("counter").config().get<int>("step") == 10);
  // The class's instance was never used, and the pipeline without an instance of its own uses it.
  CHECK_FALSE(models.is_built("counter"));
  counting.run({.batch_size = 40});
  CHECK(models.get<Counter>("counter")->value == 1);
  CHECK(counting.model_instance("counter") == models.model_instance("counter"));
  // Chained pipelines share their instance; init_model leaves the pipeline it was called on as it was.
  const auto more = tens.count();
  more.run({.batch_size = 40});
  CHECK(tens.model<Counter>("counter")->value == 1000 + 30 * 10 + 2 * 10);
  CHECK_THROWS_WITH(dataset.pipeline().init_model("countr"),
                    test::contains("has no model 'countr' (models: counter, classifier)"));
}

TEST_CASE(
    "a trained instance passed to an evaluation pipeline, or saved and loaded, gives the measured accuracy",
    "[models][instances]") {
  const auto train_data = separable(512, 1);
  const auto test_data = separable(256, 2);
  const auto config = bp::Config::parse(R"({"seed": 3, "lr": 0.5})");
  const auto training = train_data.pipeline().init_model("classifier", config).train();
  training.run({.batch_size = 32, .n_epochs = 5, .shuffle = 4, .prefetch = 2});
  training.model<Linear>("classifier")->module->eval();

  // Measured in the training process, with the training pipeline's instance.
  const double measured = accuracy_of(test_data.pipeline().with_model(training.model_instance("classifier")));
  CHECK(measured > 0.9);
  // A fresh instance of the same config has not learned.
  const double untrained = accuracy_of(test_data.pipeline().init_model("classifier", config));
  CHECK(untrained < measured);

  // Saved and loaded into another pipeline's own instance.
  const auto file =
      std::filesystem::temp_directory_path() / ("batchpipe_instance_" + std::to_string(::getpid()) + ".pt");
  bp::save_model(training, "classifier", file);
  const auto evaluation = test_data.pipeline().init_model("classifier", config);
  bp::load_model(evaluation, "classifier", file);
  evaluation.model<Linear>("classifier")->module->eval();
  CHECK(accuracy_of(evaluation) == measured);
  std::filesystem::remove(file);
  CHECK_FALSE(InstanceBatch::models().is_built("classifier"));

  CHECK_THROWS_WITH(bp::save_model(training, "counter", file),
                    test::contains("which a checkpoint cannot hold"));
  CHECK_THROWS_WITH(bp::Pipeline<ModelBatch>().with_model(training.model_instance("classifier")),
                    test::contains("model 'classifier' is of another batch class"));
}

// Checkpoints: a load replaces all or nothing; a save writes a fresh temporary file and replaces
// the checkpoint durably; errors are one line.

namespace {

namespace fs = std::filesystem;

using Stack = bp::TorchModel<torch::nn::Sequential, torch::optim::Adam>;

int64_t second_outputs = 2;                     // model "second"'s outputs: 3 makes a checkpoint not fit
torch::Dtype last_layer_dtype = torch::kFloat;  // the dtype of model "first"'s last layer

Stack make_stack(int64_t outputs, torch::Dtype last_dtype = torch::kFloat) {
  torch::nn::Sequential net(torch::nn::Linear(4, 8), torch::nn::Linear(8, outputs));
  net->ptr(1)->to(last_dtype);
  return Stack{net, torch::optim::Adam(net->parameters(), torch::optim::AdamOptions(0.01))};
}

/// A descriptor that saves and loads itself. Its load fails on the text "unloadable", after taking
/// it: a load that fails halfway.
struct Note {
  std::string text = "fresh";
  void save(torch::serialize::OutputArchive& archive) const { archive.write("text", c10::IValue(text)); }
  void load(torch::serialize::InputArchive& archive) {
    c10::IValue value;
    archive.read("text", value);
    text = value.toStringRef();
    if (text == "unloadable") throw std::runtime_error("this note cannot be loaded");
  }
};

struct SavedBatch : bp::Batch<SavedBatch> {
  MODEL(first)() { return make_stack(2, last_layer_dtype); }
  MODEL(second)() { return make_stack(second_outputs); }
  MODEL(note)() { return Note{}; }
};

void fresh_models() {
  SavedBatch::models().reset();
  second_outputs = 2;
  last_layer_dtype = torch::kFloat;
}

/// One optimisation step, so that the optimizer has a state.
void step(Stack& model) {
  model.optimizer.zero_grad();
  model.module->forward(torch::ones({3, 4})).sum().backward();
  model.optimizer.step();
}

std::vector<at::Tensor> parameters_of(const Stack& model) {
  std::vector<at::Tensor> copies;
  for (const auto& parameter : model.module->parameters()) copies.push_back(parameter.detach().clone());
  return copies;
}

bool same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const at::Tensor& x, const at::Tensor& y) { return torch::equal(x, y); });
}

std::string contents(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The message of the bp::Error that f throws; "" when it throws none.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const bp::Error& e) {
    return e.what();
  }
  return "";
}

/// A folder of a test's own, removed with its files at the end.
struct Folder {
  fs::path path;
  explicit Folder(const std::string& name)
      : path(fs::temp_directory_path() / ("batchpipe_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Folder() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  /// The names in the folder, sorted: what the saves left there.
  std::vector<std::string> names() const {
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(path)) found.push_back(entry.path().filename().string());
    std::sort(found.begin(), found.end());
    return found;
  }
};

/// While it lives, no file of the process may grow past `bytes`: a write past it fails (EFBIG),
/// as on a full disk.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) : handler_(std::signal(SIGXFSZ, SIG_IGN)) {
    ::getrlimit(RLIMIT_FSIZE, &previous_);
    rlimit limited = previous_;
    limited.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limited);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &previous_);
    std::signal(SIGXFSZ, handler_);
  }

 private:
  void (*handler_)(int);
  rlimit previous_{};
};

}  // namespace

TEST_CASE("a checkpoint that does not fit loads nothing: no parameter, no optimizer state, no other model",
          "[models][checkpoint]") {
  auto& models = SavedBatch::models();
  fresh_models();
  Folder folder("checkpoint_fit");
  const auto file = folder.path / "all.pt";
  step(*models.get<Stack>("first"));
  step(*models.get<Stack>("second"));
  models.get<Note>("note")->text = "saved";
  const auto saved = parameters_of(*models.get<Stack>("first"));
  bp::save_checkpoint<SavedBatch>(file);
  models.reset();

  SECTION("everything fits: everything is loaded") {
    bp::load_checkpoint<SavedBatch>(file);
    CHECK(same(parameters_of(*models.get<Stack>("first")), saved));
    CHECK(models.get<Stack>("first")->optimizer.state().size() == 4);
    CHECK(models.get<Note>("note")->text == "saved");
  }
  SECTION("a parameter of another shape, in a later model") {
    second_outputs = 3;
    const auto fresh = parameters_of(*models.get<Stack>("first"));
    CHECK_THROWS_WITH(bp::load_checkpoint<SavedBatch>(file),
                      test::contains("all.pt: model 'second': parameter '1.weight' has shape [2, 8] in the "
                                     "checkpoint, [3, 8] in the model"));
    CHECK(same(parameters_of(*models.get<Stack>("first")), fresh));
    CHECK(models.get<Stack>("first")->optimizer.state().empty());
    CHECK(models.get<Note>("note")->text == "fresh");
  }
  SECTION("a parameter of another dtype, after parameters that fit") {
    last_layer_dtype = torch::kDouble;
    const auto fresh = parameters_of(*models.get<Stack>("first"));
    CHECK_THROWS_WITH(bp::load_checkpoint<SavedBatch>(file),
                      test::contains("model 'first': parameter '1.weight' has dtype Float in the checkpoint, "
                                     "Double in the model"));
    CHECK(same(parameters_of(*models.get<Stack>("first")), fresh));  // '0.weight' and '0.bias' too
  }
  SECTION("one model, through a pipeline: a later parameter of another shape") {
    second_outputs = 3;
    const auto pipeline = bp::Pipeline<SavedBatch>().init_model("second");
    const auto fresh = parameters_of(*pipeline.model<Stack>("second"));
    CHECK_THROWS_WITH(
        bp::load_model(pipeline, "second", file),
        test::contains("model 'second': parameter '1.weight' has shape [2, 8] in the checkpoint, "
                       "[3, 8] in the model"));
    CHECK(same(parameters_of(*pipeline.model<Stack>("second")), fresh));
  }
  SECTION("a descriptor whose load fails halfway: the optimizer states loaded before it are put back") {
    bp::load_checkpoint<SavedBatch>(file);
    models.get<Note>("note")->text = "unloadable";
    const auto unloadable = folder.path / "unloadable.pt";
    bp::save_checkpoint<SavedBatch>(unloadable);
    models.reset();
    const auto fresh = parameters_of(*models.get<Stack>("first"));
    CHECK_THROWS_WITH(bp::load_checkpoint<SavedBatch>(unloadable),
                      test::contains("model 'note': its load failed: this note cannot be loaded"));
    CHECK(same(parameters_of(*models.get<Stack>("first")), fresh));
    CHECK(models.get<Stack>("first")->optimizer.state().empty());
    CHECK(models.get<Stack>("second")->optimizer.state().empty());
    CHECK(models.get<Note>("note")->text == "fresh");
  }
  fresh_models();
}

TEST_CASE("a checkpoint holds the models built when it was saved; a load leaves the others as they are",
          "[models][checkpoint]") {
  auto& models = SavedBatch::models();
  fresh_models();
  Folder folder("checkpoint_built");
  const auto file = folder.path / "first.pt";
  step(*models.get<Stack>("first"));
  const auto trained = parameters_of(*models.get<Stack>("first"));
  bp::save_checkpoint<SavedBatch>(file);  // "second" and "note" were never built: nothing to keep

  // Resuming, in a fresh directory: the model saved is loaded, the others stay unbuilt.
  models.reset();
  bp::load_checkpoint<SavedBatch>(file);
  CHECK(same(parameters_of(*models.get<Stack>("first")), trained));
  CHECK_FALSE(models.is_built("second"));
  CHECK_FALSE(models.is_built("note"));

  // A model built meanwhile, absent from the file, keeps its training.
  const auto second = models.get<Stack>("second");
  step(*second);
  const auto second_trained = parameters_of(*second);
  bp::load_checkpoint<SavedBatch>(file);
  CHECK(models.get<Stack>("second") == second);
  CHECK(same(parameters_of(*second), second_trained));
  CHECK(second->optimizer.state().size() == 4);

  // A model in the file that the class does not have: a checkpoint of another class.
  (void)InstanceBatch::models().get<Linear>("classifier");
  const auto other = folder.path / "other.pt";
  bp::save_checkpoint<InstanceBatch>(other);
  InstanceBatch::models().reset();
  CHECK_THROWS_WITH(bp::load_checkpoint<SavedBatch>(other),
                    test::contains("other.pt: the checkpoint holds model 'classifier', which") &&
                        test::contains("(models a checkpoint can hold: first, second, note)"));
  fresh_models();
}

TEST_CASE("a checkpoint that cannot be replaced says why, and leaves no temporary file",
          "[models][checkpoint]") {
  fresh_models();
  (void)SavedBatch::models().get<Stack>("first");
  Folder folder("checkpoint_replace");
  const auto file = folder.path / "model.pt";
  fs::create_directories(file / "in_the_way");  // a folder that is not empty where the checkpoint goes
  CHECK_THROWS_WITH(bp::save_checkpoint<SavedBatch>(file),
                    test::contains("model.pt: cannot replace the checkpoint: Is a directory"));
  CHECK(folder.names() == std::vector<std::string>{"model.pt"});
  fresh_models();
}

TEST_CASE("a save writes a temporary file of its own, never through a link planted beside the checkpoint",
          "[models][checkpoint]") {
  fresh_models();
  step(*SavedBatch::models().get<Stack>("first"));
  Folder folder("checkpoint_planted");
  const auto file = folder.path / "model.pt";
  const auto elsewhere = folder.path / "elsewhere.txt";
  std::ofstream(elsewhere) << "not yours";
  fs::create_symlink(elsewhere, file.string() + ".partial");  // the name that saves used to write to
  bp::save_checkpoint<SavedBatch>(file);
  CHECK(contents(elsewhere) == "not yours");
  CHECK_FALSE(fs::is_symlink(file));
  CHECK_NOTHROW(bp::load_checkpoint<SavedBatch>(file));
  CHECK(folder.names() == std::vector<std::string>{"elsewhere.txt", "model.pt", "model.pt.partial"});
  fresh_models();
}

TEST_CASE("two saves to one path at once both succeed, and leave a whole checkpoint",
          "[models][checkpoint]") {
  fresh_models();
  step(*SavedBatch::models().get<Stack>("first"));
  Folder folder("checkpoint_concurrent");
  const auto file = folder.path / "model.pt";
  std::atomic<int> failures{0};
  const auto save_often = [&] {
    for (int i = 0; i < 50; ++i) {
      try {
        bp::save_checkpoint<SavedBatch>(file);
      } catch (const std::exception&) {
        ++failures;
      }
    }
  };
  std::thread other(save_often);
  save_often();
  other.join();
  CHECK(failures == 0);
  CHECK_NOTHROW(bp::load_checkpoint<SavedBatch>(file));
  CHECK(folder.names() == std::vector<std::string>{"model.pt"});
  fresh_models();
}

TEST_CASE("a save that fails while writing keeps the previous checkpoint, and no temporary file",
          "[models][checkpoint]") {
  fresh_models();
  step(*SavedBatch::models().get<Stack>("first"));
  Folder folder("checkpoint_full");
  const auto file = folder.path / "model.pt";
  bp::save_checkpoint<SavedBatch>(file);
  const auto before = contents(file);
  step(*SavedBatch::models().get<Stack>("first"));
  std::string message;
  {
    const FileSizeLimit limit(1024);  // checked after: a failed check's report could not be written
    message = error_of([&] { bp::save_checkpoint<SavedBatch>(file); });
  }
  CHECK_THAT(message, test::contains("model.pt: cannot save the checkpoint: File too large"));
  CHECK(contents(file) == before);
  CHECK(folder.names() == std::vector<std::string>{"model.pt"});
  fresh_models();
}

TEST_CASE("checkpoint errors are one line, without LibTorch's stack trace", "[models][checkpoint]") {
  fresh_models();
  step(*SavedBatch::models().get<Stack>("first"));
  Folder folder("checkpoint_errors");
  const auto whole = folder.path / "whole.pt";
  bp::save_checkpoint<SavedBatch>(whole);
  const auto bytes = contents(whole);
  const auto file_with = [&](const std::string& name, const std::string& text) {
    const auto path = folder.path / name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  };
  const auto one_line = [](const std::string& message) {
    return !message.empty() && message.find('\n') == std::string::npos;
  };
  for (const auto& file : {file_with("empty.pt", ""), file_with("garbage.pt", "not a checkpoint"),
                           file_with("truncated.pt", bytes.substr(0, bytes.size() / 2))}) {
    const auto message = error_of([&] { bp::load_checkpoint<SavedBatch>(file); });
    INFO(message);
    CHECK_THAT(message, test::contains("not a readable checkpoint: "));
    CHECK(one_line(message));
    CHECK(one_line(error_of([&] { bp::load_model(bp::Pipeline<SavedBatch>(), "first", file); })));
  }
  // No such folder; a file where the folder should be.
  for (const auto& file : {folder.path / "missing" / "model.pt", whole / "model.pt"}) {
    const auto message = error_of([&] { bp::save_checkpoint<SavedBatch>(file); });
    INFO(message);
    CHECK_THAT(message, test::contains("cannot save the checkpoint: "));
    CHECK(one_line(message));
  }
  fresh_models();
}
