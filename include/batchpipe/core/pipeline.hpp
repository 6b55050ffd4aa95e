#pragma once
/// @file pipeline.hpp
/// @brief `Pipeline<B>`: a lazy chain of actions over a dataset, built fluently or from a config.
/// This is where a run starts (gen_batch) and its sources are chained (make_source); a batch is
/// made and its actions dispatched in core/detail/step_runner.hpp.

#include <batchpipe/core/action.hpp>
#include <batchpipe/core/batch.hpp>
#include <batchpipe/core/batch_stream.hpp>
#include <batchpipe/core/config.hpp>
#include <batchpipe/core/dataset.hpp>
#include <batchpipe/core/detail/action_binding.hpp>
#include <batchpipe/core/detail/batch_sampler.hpp>
#include <batchpipe/core/detail/batch_sources.hpp>
#include <batchpipe/core/detail/prefetcher.hpp>
#include <batchpipe/core/detail/progress_notifier.hpp>
#include <batchpipe/core/detail/run_context.hpp>
#include <batchpipe/core/detail/step_runner.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/expressions.hpp>
#include <batchpipe/core/model.hpp>
#include <batchpipe/core/profile.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/core/run_options.hpp>
#include <batchpipe/core/variables.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/kept_iteration.hpp>
#include <batchpipe/detail/traits.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <algorithm>
#include <any>
#include <atomic>
#include <chrono>
#include <concepts>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace batchpipe {

/// @brief A lazy chain of actions over a dataset: building it runs nothing.
///
/// Every action of B is a fluent method here, with its arguments checked at compile time;
/// `append("name", {args...})` adds one by name with the arguments checked at run time. A
/// pipeline is a value: chaining returns a new pipeline and leaves the old one as it was.
/// `a + b` runs a's actions, then b's.
///
/// @code
/// auto prep  = dataset.pipeline().normalize(0.286f, 0.353f).flip();
/// auto train = prep.train_model();                       // prep is unchanged
/// train.run({.batch_size = 256, .n_epochs = 5, .shuffle = 42, .prefetch = 2});
/// @endcode
template <class B>
class Pipeline : public detail::access::fluent_base<B, Pipeline<B>> {
 public:
  /// The batch class the pipeline runs.
  using batch_type = B;

  /// A pipeline with no dataset yet (bind one with `with`, or add it to one that has one).
  Pipeline() = default;
  /// An empty pipeline over `dataset`, as `dataset.pipeline()` makes it.
  explicit Pipeline(Dataset<B> dataset) : dataset_(std::move(dataset)) {}

  /// This pipeline's actions over another dataset.
  [[nodiscard]] Pipeline with(Dataset<B> dataset) const {
    if (merged_) throw Error("with: a merged pipeline takes its batches from the pipelines it merges");
    Pipeline result = *this;
    result.dataset_ = std::move(dataset);
    return result;
  }

  /// This pipeline with action `name` added, its arguments checked at run time against the
  /// action's parameters: trailing parameters with C++ default arguments may be left out, numbers
  /// convert between arithmetic types, and an argument may be an expression (`bp::C("lr")`). An
  /// Error for an unknown action, one that cannot be called by name
  /// (ActionInfo::callable_by_name), or arguments that do not fit.
  [[nodiscard]] Pipeline append(std::string_view name, std::vector<std::any> args = {}) const {
    return with_step(B::actions().bind(name, std::move(args)));
  }

  /// A pipeline written in a config: the steps listed at `path` (an array), in order. A step is
  /// an action's name (`"flip"`) or an object whose key is the name and whose value holds the
  /// named arguments (`{"normalize": {"mean": 0.286, "std": {"C": "data.std"}}}`), with an
  /// optional second key `"with_probability"` (a number, `{"C": path}` or `{"V": name}`); an
  /// argument left out takes the default its ACTION declares (`.params`), or its C++ default
  /// when it is among the last. `{"rebatch": n}` re-cuts the stream; `{"merge": [[steps...],
  /// [steps...], ...]}`, as the first step, merges pipelines of those steps over `dataset`. The
  /// config's `"models"` object, when there is one, gives models their configs (init_model). The
  /// pipeline carries the whole config (`C(...)`, Batch::config). Errors name the config's
  /// source (the file), the place (`pipeline[2]`), the action and the argument.
  static Pipeline from_config(Dataset<B> dataset, const Config& config, std::string_view path = "pipeline") {
    // The instances first: every pipeline made here holds them, a merge's inputs too.
    Pipeline start(std::move(dataset));
    start.config_ = config;
    if (config.contains("models")) {
      const Config models = config.at("models");
      for (const auto& model : models.to_json().items())
        start = start.init_model(model.key(), models.at(model.key()));
    }
    return from_json_steps(start, config.get<Config::json>(path), config.source() + ": " + std::string(path));
  }

  /// This pipeline carrying `config`: what `C(...)` arguments and Batch::config read. This
  /// pipeline is unchanged.
  [[nodiscard]] Pipeline with_config(Config config) const {
    Pipeline result = *this;
    result.config_ = std::move(config);
    return result;
  }

  /// The config the pipeline carries (empty unless one was given).
  const Config& config() const noexcept { return config_; }

  /// This pipeline with its own, new instance of model `name`, which the definition builds from
  /// `config` on first use: the actions that name the model get it instead of the class's. This
  /// pipeline is unchanged; the pipelines chained from the result share the instance.
  [[nodiscard]] Pipeline init_model(std::string_view name, Config config = Config()) const {
    return with_model(B::models().make_instance(name, std::move(config)));
  }

  /// This pipeline with `instance` (taken from another pipeline: a trained model to evaluate) as
  /// its instance of that model. An Error when the instance is of another batch class.
  [[nodiscard]] Pipeline with_model(ModelInstance instance) const {
    if (instance.batch_class() != typeid(B)) {
      throw Error("Pipeline<" + detail::type_name<B>() + ">::with_model: model '" + instance.name() +
                  "' is of another batch class");
    }
    Pipeline result = *this;
    result.models_.insert_or_assign(instance.name(), std::move(instance));
    return result;
  }

  /// The instance of model `name` that this pipeline's actions get: its own, or the class's.
  /// An Error when the class has no such model.
  ModelInstance model_instance(std::string_view name) const {
    if (auto found = models_.find(name); found != models_.end()) return found->second;
    return B::models().model_instance(name);
  }

  /// The model `name` as a T, as this pipeline's actions get it (built now if need be).
  template <class T>
  std::shared_ptr<T> model(std::string_view name) const {
    return model_instance(name).template get<T>();
  }

  /// This pipeline with a new variable `name` holding `initial`; the actions of the pipelines
  /// chained from it reach it with `variable<T>(name)`. This pipeline is unchanged.
  template <class T>
  [[nodiscard]] Pipeline init_variable(std::string name, T initial) const {
    Pipeline result = *this;
    result.variables_ = variables_.with(std::move(name), std::move(initial));
    return result;
  }

  /// The pipeline's variables, to read during or after a run.
  const Variables& variables() const noexcept { return variables_; }

  /// The variable `name` as a T.
  template <class T>
  Variable<T> variable(std::string_view name) const {
    return variables_.template get<T>(name);
  }

  /// a's actions, then b's, over a's dataset (b's when a has none); the variables, configs and
  /// model instances of both (a's where both have one); a's before- and after-run hooks, then b's.
  [[nodiscard]] friend Pipeline operator+(const Pipeline& a, const Pipeline& b) {
    Pipeline result = a;
    result.variables_ = a.variables_.merged(b.variables_);
    result.models_.insert(b.models_.begin(), b.models_.end());  // a's instance where both have one
    result.config_ = combined_config(a.config_, b.config_);
    if (!result.dataset_ && !result.merged_) {
      result.dataset_ = b.dataset_;
      result.merged_ = b.merged_;
    }
    result.steps_.insert(result.steps_.end(), b.steps_.begin(), b.steps_.end());
    result.before_.insert(result.before_.end(), b.before_.begin(), b.before_.end());
    result.after_.insert(result.after_.end(), b.after_.begin(), b.after_.end());
    return result;
  }

  /// The names of the actions, in order.
  std::vector<std::string> action_names() const {
    std::vector<std::string> names;
    for (const auto& step : steps_) names.push_back(step->action->info.name);
    return names;
  }

  /// True when the pipeline has a dataset to run over (a merged pipeline: its first pipeline's).
  bool has_dataset() const noexcept { return dataset_.has_value() || merged_; }
  /// The dataset the pipeline runs over (a merged pipeline: its first pipeline's); an Error when
  /// it has none.
  const Dataset<B>& dataset() const {
    require_dataset();
    return merged_ ? merged_->front().dataset() : *dataset_;
  }

  /// A run's batches, made on demand and passed through the actions.
  [[nodiscard]] BatchStream<B> gen_batch(const RunOptions& options) const {
    require_dataset();
    const std::uint64_t seed = options.seed      ? *options.seed
                               : options.shuffle ? *options.shuffle
                                                 : std::random_device{}();
    auto observers = std::make_unique<detail::RunObservers>();
    observers->before = before_;
    observers->after = after_;
    if (options.profile) observers->profiler = std::make_shared<detail::Profiler>(action_names());
    if (options.progress) observers->progress.emplace(*options.progress, planned_run(options), variables_);
    auto source = make_source(options, seed, observers->profiler);
    return BatchStream<B>(std::move(source), seed, std::move(observers));
  }

  /// The next batch of an iteration that the first call starts with `options` (later calls
  /// continue it); nothing once it is over. reset_iter() starts again.
  std::optional<B> next_batch(const RunOptions& options) {
    return iteration_.value.next([&] { return gen_batch(options); });
  }
  /// Forgets the iteration next_batch() started: the next call starts a new one.
  void reset_iter() { iteration_.value.reset(); }

  /// Runs the whole pipeline: every batch of every epoch goes through every action.
  RunStats run(const RunOptions& options) const {
    auto stream = gen_batch(options);
    while (stream.next()) {}
    return stream.stats();
  }

  /// This pipeline's actions `times` times over, one round after another (0: none). Each round's
  /// random draws and probabilities are its own. `p * n` says the same.
  [[nodiscard]] Pipeline repeat(std::size_t times) const {
    Pipeline result = *this;
    result.steps_.clear();
    for (std::size_t i = 0; i < times; ++i)
      result.steps_.insert(result.steps_.end(), steps_.begin(), steps_.end());
    return result;
  }
  /// `pipeline.repeat(times)`; an Error for a negative count.
  [[nodiscard]] friend Pipeline operator*(const Pipeline& pipeline, std::integral auto times) {
    if constexpr (std::is_signed_v<decltype(times)>) {
      if (times < 0)
        throw Error("Pipeline * " + std::to_string(times) + ": a pipeline repeats a count >= 0 of times");
    }
    return pipeline.repeat(static_cast<std::size_t>(times));
  }

  /// This pipeline with its last action applied to each batch with probability `p` (in [0, 1]),
  /// in place of the action's own `.p`; the draw is the batch's and the step's, so it is the same
  /// for one seed whatever the prefetch and threads.
  [[nodiscard]] Pipeline with_probability(double p) const {
    check_probability(p, std::to_string(p));
    return with_last_step_probability([p](const detail::RunContext&) { return p; });
  }
  /// With probability `bp::C("augment.p")`: read from the pipeline's config when a run starts.
  template <class T>
  [[nodiscard]] Pipeline with_probability(detail::config_expression<T> p) const {
    return with_last_step_probability([p](const detail::RunContext& context) {
      return check_probability(context.config.template get<double>(p.path), p.text());
    });
  }
  /// With probability `bp::V("p")`: the variable's value (a number) when a run starts.
  template <class T>
  [[nodiscard]] Pipeline with_probability(detail::variable_expression<T> p) const {
    return with_last_step_probability([p](const detail::RunContext& context) {
      const auto value = context.variables.number(p.name);
      if (!value) throw Error(p.text() + " is not a number (or holds none yet)");
      return check_probability(*value, p.text());
    });
  }

  /// This pipeline with the stream of batches re-cut, after the actions so far, into batches of
  /// `size` items: components (tensors) concatenated, the index kept, each epoch's last batch the
  /// remainder (dropped with RunOptions::drop_last). The actions after it run on the consumer's
  /// thread, one batch at a time; their batches are numbered anew.
  [[nodiscard]] Pipeline rebatch(std::size_t size) const {
    if (size == 0) throw Error("rebatch: a batch holds at least 1 item");
    detail::Step<B> step{&detail::builtin_entry<B>("rebatch"), nullptr};
    step.rebatch_size = size;
    return with_step(std::make_shared<const detail::Step<B>>(std::move(step)));
  }

  /// This pipeline with `components` of another pipeline's batch for the same items added to each
  /// batch: `other`'s dataset makes a batch of this batch's ids (found by id, in any order) and
  /// `other`'s actions run on it, in this batch's task. An Error names an id `other`'s dataset
  /// lacks, or a component its batch lacks.
  template <class C>
  [[nodiscard]] Pipeline join(Pipeline<C> other, std::vector<std::string> components) const {
    if (!other.dataset_)
      throw Error("join: the joined pipeline has no dataset of its own (merged or unbound)");
    if (other.next_rebatch(0) < other.steps_.size()) throw Error("join: the joined pipeline may not rebatch");
    auto context = std::make_shared<const detail::RunContext>(
        detail::RunContext{other.variables_, other.config_, other.models_});
    auto run = std::make_shared<const detail::RunSteps<C>>(
        detail::RunSteps<C>{other.steps_, other.probabilities(*context), 0, 0, other.steps_.size(), nullptr});
    auto apply = [dataset = *other.dataset_, run, context, components = std::move(components)](B& batch) {
      C joined = dataset.create_batch(detail::positions_of(batch.index(), dataset.index(), "join"));
      // The joined batch draws from a stream of this batch's (so of the run's seed).
      const std::uint64_t seed = batch.random().split(detail::stream_salt::join).seed();
      detail::number_batch(joined, batch.number(), batch.epoch(), seed, context);
      detail::run_steps(joined, *run, 0, run->steps.size(), nullptr, seed);
      for (const auto& name : components) {
        auto& from = detail::access::components(joined);
        auto found = from.find(name);
        if (found == from.end()) {
          throw Error("join: the joined batch has no component '" + name + "' (components: " +
                      detail::join_names(from, [](const auto& entry) { return entry.first; }) + ")");
        }
        detail::access::components(batch).insert_or_assign(name, std::move(found->second));
      }
    };
    const bool joins_a_model = std::any_of(other.steps_.begin(), other.steps_.end(),
                                           [](const auto& step) { return step->uses_model(); });
    return with_step(
        std::make_shared<const detail::Step<B>>(detail::Step<B>{.action = &detail::builtin_entry<B>("join"),
                                                                .apply = std::move(apply),
                                                                .joins_a_model = joins_a_model}));
  }
  /// join(pipeline, components) with a dataset's batches as they are made (no actions).
  template <class C>
  [[nodiscard]] Pipeline join(const Dataset<C>& other, std::vector<std::string> components) const {
    return join(other.pipeline(), std::move(components));
  }

  /// This pipeline with `hook` run once before each run's first batch (set-up: a variable reset,
  /// a folder made). An exception from it ends the run before any batch; the after-run hooks
  /// still run, told so.
  [[nodiscard]] Pipeline before(std::function<void()> hook) const {
    Pipeline result = *this;
    result.before_.push_back(std::move(hook));
    return result;
  }
  /// This pipeline with `other.run(options)` run once before each run.
  template <class C>
  [[nodiscard]] Pipeline before(Pipeline<C> other, RunOptions options) const {
    return before([other = std::move(other), options = std::move(options)] { other.run(options); });
  }

  /// This pipeline with `hook` run once at each run's end (a final evaluation, saving), also when
  /// the run failed or its stream was destroyed early: the RunReport says which. Its exception is
  /// thrown from the run, naming the run's own error if there was one.
  [[nodiscard]] Pipeline after(std::function<void(const RunReport&)> hook) const {
    Pipeline result = *this;
    result.after_.push_back(std::move(hook));
    return result;
  }
  /// This pipeline with `other.run(options)` run once at each run's end, whether it failed or not.
  template <class C>
  [[nodiscard]] Pipeline after(Pipeline<C> other, RunOptions options) const {
    return after(
        [other = std::move(other), options = std::move(options)](const RunReport&) { other.run(options); });
  }

 private:
  template <class Action, class P, class... A>
  friend P detail::append_action(const P& pipeline, A&&... args);
  template <class>
  friend class Pipeline;
  template <class C>
  friend Pipeline<C> merge(std::vector<Pipeline<C>> pipelines);

  // The settings of `first` and `second` as one config, first's values where both have one. The
  // one that has settings keeps its source (the file errors name).
  static Config combined_config(const Config& first, const Config& second) {
    if (second.to_json().empty()) return first;
    if (first.to_json().empty()) return second;
    return second.merged(first);
  }

  /// The next rebatch marker at or after step `from` (steps_.size() when there is none).
  std::size_t next_rebatch(std::size_t from) const {
    while (from < steps_.size() && steps_[from]->rebatch_size == 0) ++from;
    return from;
  }

  /// What the progress bar expects: batches and items, when the run's epochs are counted. After a
  /// rebatch or a merge the batches are not known ahead, only the items.
  std::optional<detail::PlannedRun> planned_run(const RunOptions& options) const {
    auto planned = detail::planned_run(dataset().size(), options);
    if (planned && (merged_ || next_rebatch(0) < steps_.size())) planned->batches = 0;
    return planned;
  }

  /// The chain of sources a run pulls its batches from. Without a merge: the prefetcher makes
  /// batches from the dataset and runs the steps up to the first rebatch (those before the first
  /// singleton on the arena, the rest on the consumer). With a merge: the merged pipelines' own
  /// sources, side by side, and these steps on the consumer. Each rebatch re-cuts the stream,
  /// and the steps after it run on the consumer.
  /// `arena`: the run's, when this pipeline is one of a merge's inputs (they share the budget).
  detail::BatchSourcePtr<B> make_source(const RunOptions& options, std::uint64_t seed,
                                        const detail::ProfilerPtr& profiler,
                                        const detail::ArenaPtr& arena = nullptr) const {
    auto context =
        std::make_shared<const detail::RunContext>(detail::RunContext{variables_, config_, models_});
    std::size_t stage_end = next_rebatch(0);
    const bool sharded = options.shard && options.shard->count > 1;
    // The ranks of a job must make the same number of steps that call collectives.
    if (sharded && stage_end < steps_.size())
      throw Error("RunOptions::shard: a rebatch would cut each shard into its own number of batches");
    // Shards share the shuffle and which batches a step applies to (so every rank trains the
    // same steps), not the batches' draws: each rank augments its own way.
    const std::uint64_t stream_seed =
        sharded ? detail::derive_seed(seed, detail::stream_salt::shard + options.shard->rank) : seed;
    auto run = std::make_shared<const detail::RunSteps<B>>(
        detail::RunSteps<B>{steps_, probabilities(*context), seed, stream_seed,
                            std::min(first_singleton(), stage_end), profiler});
    if (sharded && !options.seed && !options.shuffle &&
        std::any_of(run->probability.begin(), run->probability.end(), [](double p) { return p < 1.0; })) {
      throw Error(
          "RunOptions::shard: a pipeline with probabilistic steps needs a seed shared by every shard "
          "(RunOptions::seed or shuffle), so that they apply the steps to the same batches");
    }
    auto consumer_steps = [&](detail::BatchSourcePtr<B> upstream, std::size_t first, std::size_t last) {
      if (first == last) return upstream;
      return detail::BatchSourcePtr<B>(std::make_unique<detail::ConsumerSteps<B>>(
          std::move(upstream),
          [run, first, last](B& batch) { detail::run_steps(batch, *run, first, last, nullptr); }));
    };
    // A merge pairs its inputs' batches in order, and a rebatch cuts each epoch apart: both need
    // the batches before them in index order, whatever `ordered` says.
    RunOptions upstream_options = options;
    if (merged_ || stage_end < steps_.size()) upstream_options.ordered = true;
    detail::BatchSourcePtr<B> source;
    if (merged_) {
      std::vector<detail::BatchSourcePtr<B>> inputs;
      // One arena for all: each input making its own would give each the whole thread budget.
      const auto shared = arena ? arena : detail::make_run_arena(upstream_options);
      for (const auto& input : *merged_)
        inputs.push_back(input.make_source(upstream_options, seed, nullptr, shared));
      source = consumer_steps(
          std::make_unique<detail::MergedBatches<B>>(
              std::move(inputs), detail::derive_seed(seed, detail::stream_salt::merge), context),
          0, stage_end);
    } else {
      auto make = [dataset = *dataset_, run, context](detail::BatchPlan plan,
                                                      const detail::BeforeAction& before_action) {
        return detail::make_batch(dataset, *run, context, plan, before_action);
      };
      typename detail::Prefetcher<B>::Finish finish;
      if (run->parallel_steps < stage_end) {
        finish = [run, stage_end](B& batch) {
          detail::run_steps(batch, *run, run->parallel_steps, stage_end, nullptr);
        };
      }
      detail::BatchSampler sampler(dataset_->size(), upstream_options);
      source = std::make_unique<detail::PrefetchedBatches<B>>(std::make_unique<detail::Prefetcher<B>>(
          std::move(sampler), std::move(make), std::move(finish), upstream_options, profiler, arena));
    }
    // The items each epoch brings a rebatch, as planned (actions may skip some, never add).
    std::size_t epoch_items = detail::EpochLayout(dataset().size(), options.batch_size, options.drop_last,
                                                  options.shard.value_or(Shard{}))
                                  .items();
    while (stage_end < steps_.size()) {
      const std::size_t marker = stage_end;
      const std::size_t size = steps_[marker]->rebatch_size;
      stage_end = next_rebatch(marker + 1);
      const bool gives_nothing = !options.n_epochs.has_value() && options.drop_last && epoch_items < size;
      if (options.drop_last) epoch_items -= epoch_items % size;
      source = std::make_unique<detail::Rebatcher<B>>(
          std::move(source), size, options.drop_last, gives_nothing,
          detail::derive_seed(seed, detail::stream_salt::rebatch + marker));
      source = consumer_steps(std::move(source), marker + 1, stage_end);
    }
    return source;
  }

  // The steps of a config's list (from_config), each named in errors by `where` and its place.
  // `start`: the dataset, the config and the models' instances, without steps.
  static Pipeline from_json_steps(const Pipeline& start, const Config::json& steps,
                                  const std::string& where) {
    if (!steps.is_array()) {
      throw Error(where + " must be an array of steps, not " + detail::json_excerpt(steps));
    }
    Pipeline result = start;
    for (std::size_t i = 0; i < steps.size(); ++i) {
      const std::string place = where + "[" + std::to_string(i) + "]";
      const Config::json& step = steps[i];
      const bool single = step.is_object() && step.size() == 1;
      if (single && step.contains("merge")) {
        if (i != 0) throw Error(place + ": merge makes the batches: it can only be the first step");
        result = merged_from_json(start, step["merge"], place + ".merge");
      } else if (single && step.contains("rebatch")) {
        result = result.rebatch(Config(step, place).template get<std::size_t>("rebatch"));
      } else {
        result = result.with_step(step_from_json(step, place));
        if (step.is_object() && step.contains("with_probability"))
          result = result.probability_from_json(step["with_probability"], place);
      }
    }
    return result;
  }

  static Pipeline merged_from_json(const Pipeline& start, const Config::json& lists,
                                   const std::string& where) {
    if (!lists.is_array() || lists.size() < 2)
      throw Error(where + " takes an array of two lists of steps or more, not " +
                  detail::json_excerpt(lists));
    std::vector<Pipeline> inputs;
    for (std::size_t k = 0; k < lists.size(); ++k)
      inputs.push_back(from_json_steps(start, lists[k], where + "[" + std::to_string(k) + "]"));
    return merge(std::move(inputs));
  }

  // The last step's probability from a config: a number, {"C": path} or {"V": name}.
  Pipeline probability_from_json(const Config::json& value, const std::string& where) const {
    const auto expression = [&](const char* key) -> std::optional<std::string> {
      if (!value.is_object() || value.size() != 1 || !value.contains(key)) return std::nullopt;
      if (!value[key].is_string())
        throw Error(where + ": with_probability: {\"" + key + "\": ...} takes a string");
      return value[key].template get<std::string>();
    };
    if (value.is_number()) return with_probability(value.template get<double>());
    if (const auto path = expression("C")) return with_probability(batchpipe::C(*path));
    if (const auto name = expression("V")) return with_probability(batchpipe::V(*name));
    throw Error(where + ": with_probability is a number, {\"C\": path} or {\"V\": name}, not " +
                detail::json_excerpt(value));
  }

  /// One action of a config's list: "name", or {"name": {arguments}} (null: no arguments), with
  /// an optional "with_probability" key beside the name.
  static detail::StepPtr<B> step_from_json(const Config::json& action, const std::string& where) {
    if (action.is_string())
      return B::actions().bind_keywords(action.template get<std::string>(), Config(), where);
    const std::size_t keys = action.is_object() ? action.size() - action.count("with_probability") : 0;
    if (keys != 1) {
      throw Error(where +
                  ": an action is a name, or an object whose key is the name, with its arguments (and "
                  "\"with_probability\" beside it); got " +
                  detail::json_excerpt(action));
    }
    auto entry = action.begin();
    if (entry.key() == "with_probability") ++entry;
    const std::string name = entry.key();
    const Config::json& args = entry.value();
    if (!args.is_object() && !args.is_null()) {
      throw Error(where + ": the arguments of action '" + name + "' are an object of named values, not " +
                  detail::json_excerpt(args));
    }
    return B::actions().bind_keywords(name, args.is_null() ? Config() : Config(args, where), where);
  }

  Pipeline with_step(detail::StepPtr<B> step) const {
    Pipeline result = *this;
    result.steps_.push_back(std::move(step));
    return result;
  }

  void require_dataset() const {
    if (!dataset_ && !merged_) {
      throw Error("Pipeline<" + detail::type_name<B>() +
                  "> has no dataset: start it with dataset.pipeline() or bind one with with()");
    }
  }

  /// Where the sequential part of the pipeline starts: at its first singleton action.
  std::size_t first_singleton() const {
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      if (steps_[i]->action->info.singleton) return i;
    }
    return steps_.size();
  }

  /// Each step's probability for a run: set with with_probability, or the action's `.p`.
  std::vector<double> probabilities(const detail::RunContext& context) const {
    std::vector<double> result;
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      const detail::Step<B>& step = *steps_[i];
      if (!step.probability) {
        result.push_back(step.action->info.probability);
        continue;
      }
      try {
        result.push_back(step.probability(context));
      } catch (...) {
        std::throw_with_nested(Error("Pipeline<" + detail::type_name<B>() + ">: the probability of action '" +
                                     step.action->info.name + "' (step " + std::to_string(i) +
                                     "): " + detail::current_exception_message()));
      }
    }
    return result;
  }

  static double check_probability(double p, const std::string& text) {
    if (!(p >= 0.0 && p <= 1.0)) throw Error("probability " + text + " is outside [0, 1]");
    return p;
  }

  Pipeline with_last_step_probability(std::function<double(const detail::RunContext&)> probability) const {
    if (steps_.empty()) throw Error("with_probability: the pipeline has no action to apply it to");
    if (steps_.back()->rebatch_size)
      throw Error("with_probability: a rebatch is not an action to apply sometimes");
    auto step = std::make_shared<detail::Step<B>>(*steps_.back());
    step->probability = std::move(probability);
    Pipeline result = *this;
    result.steps_.back() = std::move(step);
    return result;
  }

  std::optional<Dataset<B>> dataset_;
  std::vector<detail::StepPtr<B>> steps_;
  Variables variables_;
  Config config_;
  std::map<std::string, ModelInstance, std::less<>> models_;
  std::vector<std::function<void()>> before_;
  std::vector<std::function<void(const RunReport&)>> after_;
  std::shared_ptr<const std::vector<Pipeline>> merged_;  // set: the batches come from these
  detail::not_copied<detail::KeptIteration<B>> iteration_;
};

/// One pipeline whose batches are those of `pipelines` side by side: each run runs every one of
/// them with its options and delivers the first's batch with the components only the others have
/// added. They must deliver the same items in the same order (the same ids, batch size and
/// shuffle); an Error names the first difference. The result's own actions run on the consumer's
/// thread; it has the variables, config and model instances of all (the first's where several
/// have one); the merged pipelines' before- and after-run hooks do not run.
template <class B>
[[nodiscard]] Pipeline<B> merge(std::vector<Pipeline<B>> pipelines) {
  if (pipelines.size() < 2) throw Error("merge: it takes two pipelines or more");
  for (std::size_t i = 0; i < pipelines.size(); ++i) {
    if (!pipelines[i].has_dataset())
      throw Error("merge: pipeline " + std::to_string(i + 1) + " has no dataset");
  }
  Pipeline<B> result;
  for (const auto& input : pipelines) {
    result.variables_ = result.variables_.merged(input.variables_);
    result.models_.insert(input.models_.begin(), input.models_.end());
    result.config_ = Pipeline<B>::combined_config(result.config_, input.config_);
  }
  result.merged_ = std::make_shared<const std::vector<Pipeline<B>>>(std::move(pipelines));
  return result;
}

/// merge({first, second, more...}).
template <class B, class... More>
[[nodiscard]] Pipeline<B> merge(const Pipeline<B>& first, const Pipeline<B>& second, const More&... more) {
  return merge(std::vector<Pipeline<B>>{first, second, more...});
}

namespace detail {
template <class Action, class P, class... A>
P append_action(const P& pipeline, A&&... args) {
  using B = typename P::batch_type;
  return pipeline.with_step(make_step<B, Action>(store_arguments<B, Action>(std::forward<A>(args)...)));
}
}  // namespace detail

}  // namespace batchpipe
