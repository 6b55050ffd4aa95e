// The flow of a run and watching it: skipped batches, repetition, probabilities decided per run,
// before- and after-run hooks, the per-action profile, the progress notifier and its plot.
#include "support.hpp"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct FlowBatch : bp::Batch<FlowBatch> {
  ACTION(skip_multiples)(std::size_t modulus) {
    if (number() % modulus == 0) skip();
  }
  ACTION(skip_in_step, .singleton = true)(std::size_t modulus) {
    if (number() % modulus == 1) skip();
  }
  ACTION(record, .singleton = true)(std::vector<std::size_t>& seen) { seen.push_back(number()); }
  ACTION(add_one)() {
    if (!has("count")) set("count", 0);
    ++get<int>("count");
  }
  ACTION(mark)() { set("marked", true); }
  ACTION(sleep_ms)(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
  ACTION(step_ms, .singleton = true)(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
  ACTION(count_into)(std::atomic<int>& counter) { ++counter; }
  ACTION(fail_at)(std::size_t failing) {
    if (number() == failing) throw std::runtime_error("batch " + std::to_string(failing) + " is bad");
  }
  ACTION(load_ids)() {  // "x": each item's id; "y": two columns derived from it
    std::vector<std::int64_t> ids;
    for (const auto& id : index().ids()) ids.push_back(id.integer());
    set("x", at::tensor(ids, at::kLong));
    set("y", at::stack({get("x") * 2, get("x") * 3}, 1));
  }
  ACTION(times_ten)() { set("z", get("x") * 10); }
  ACTION(read_context)() {  // what a batch reads from its run: a variable and the config
    set("context", variable<int>("v").value() + config().get<int>("k"));
  }
  ACTION(set_mean)() { set("mean", get("x").to(at::kFloat).mean()); }
  ACTION(jitter_free)() {}
  ACTION(times_ten_of_ids)() {
    std::vector<std::int64_t> ids;
    for (const auto& id : index().ids()) ids.push_back(id.integer() * 10);
    set("z", at::tensor(ids, at::kLong));
  }
  ACTION(name_items)() { set("names", std::vector<std::string>(size(), "n")); }
  ACTION(record_size, .singleton = true)(std::vector<std::size_t>& sizes) { sizes.push_back(size()); }
  ACTION(record_ids, .singleton = true)(std::vector<std::vector<std::int64_t>>& batches) {
    batches.emplace_back();
    for (const auto& id : index().ids()) batches.back().push_back(id.integer());
  }
  ACTION(track)() {
    variable<double>("loss").set(1.0 / static_cast<double>(number() + 1));
    variable<bp::Accuracy>("accuracy").update([&](bp::Accuracy& a) {
      a.correct += number() % 2;
      a.total += 1;
    });
  }
};

bp::Dataset<FlowBatch> numbers(std::size_t n) { return bp::Dataset<FlowBatch>(n); }

// A batch class of another kind, with preloaded data: what join brings in.
struct LabelBatch : bp::Batch<LabelBatch> {
  ACTION(double_label)() { set("twice", get("label") * 2); }
};

std::vector<std::int64_t> ids_of(const bp::Index& index) {
  std::vector<std::int64_t> ids;
  for (const auto& id : index.ids()) ids.push_back(id.integer());
  return ids;
}

std::vector<std::int64_t> values_of(const at::Tensor& tensor) {
  const auto contiguous = tensor.contiguous();
  return {contiguous.data_ptr<std::int64_t>(), contiguous.data_ptr<std::int64_t>() + contiguous.numel()};
}

std::vector<std::size_t> delivered(const bp::Pipeline<FlowBatch>& pipeline, const bp::RunOptions& options) {
  std::vector<std::size_t> result;
  for (auto& batch : pipeline.gen_batch(options)) result.push_back(batch.number());
  return result;
}

// Per batch (by number): whether the marked component was set.
std::vector<bool> marks(const bp::Pipeline<FlowBatch>& pipeline, bp::RunOptions options) {
  std::vector<bool> result(40);
  for (auto& batch : pipeline.gen_batch(options)) result.at(batch.number()) = batch.has("marked");
  return result;
}

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

}  // namespace

TEST_CASE("a skipped batch is never delivered, counted, and the order holds", "[flow]") {
  test::finishes_within(60s, [] {
    for (const std::size_t prefetch : {0u, 1u, 4u}) {
      INFO("prefetch " << prefetch);
      std::vector<std::size_t> seen_by_step;
      // 50 items in batches of 4: 13 batches; 0, 3, 6, 9, 12 skipped on the arena, 1, 4, 7, 10
      // in the consumer's step.
      auto pipeline = numbers(50).pipeline().skip_multiples(3).skip_in_step(3).record(seen_by_step);
      auto stream = pipeline.gen_batch({.batch_size = 4, .prefetch = prefetch});
      std::vector<std::size_t> got;
      for (auto& batch : stream) got.push_back(batch.number());
      const std::vector<std::size_t> expected{2, 5, 8, 11};
      CHECK(got == expected);
      CHECK(seen_by_step == expected);  // no step after the skipping one saw a skipped batch
      CHECK(stream.stats().batches == 4);
      CHECK(stream.stats().skipped == 9);
      CHECK(stream.stats().items == 16);
    }
    // Unordered: the same batches, in any order.
    auto got = delivered(numbers(200).pipeline().skip_multiples(2),
                         {.batch_size = 5, .prefetch = 3, .ordered = false});
    std::set<std::size_t> unique(got.begin(), got.end());
    CHECK(got.size() == 20);
    CHECK(unique.size() == 20);
    CHECK(std::all_of(got.begin(), got.end(), [](std::size_t n) { return n % 2 == 1; }));
  });
}

TEST_CASE("a pipeline repeated n times runs its actions n times", "[flow]") {
  const auto once = numbers(10).pipeline().add_one().mark();
  CHECK((once * 3).action_names() ==
        std::vector<std::string>{"add_one", "mark", "add_one", "mark", "add_one", "mark"});
  for (auto& batch : (once * 3).gen_batch({.batch_size = 5, .prefetch = 2}))
    CHECK(batch.get<int>("count") == 3);
  CHECK(once.repeat(0).action_names().empty());
  CHECK((once * 2u).action_names().size() == 4);
  CHECK(once.action_names().size() == 2);  // unchanged
  CHECK_THROWS_WITH(once * -1, test::contains(">= 0"));
}

TEST_CASE("a probability set per run applies the action to that share of batches, the same for one seed",
          "[flow][random]") {
  test::finishes_within(60s, [] {
    const auto pipeline = numbers(40).pipeline().mark().with_probability(0.5);
    const auto reference = marks(pipeline, {.batch_size = 1, .seed = 7});
    const auto marked = std::count(reference.begin(), reference.end(), true);
    CHECK(marked > 8);
    CHECK(marked < 32);
    for (const std::size_t prefetch : {0u, 3u}) {
      for (const std::size_t threads : {1u, 2u}) {
        CHECK(marks(pipeline, {.batch_size = 1, .seed = 7, .prefetch = prefetch, .threads = threads}) ==
              reference);
      }
    }
    CHECK(marks(pipeline, {.batch_size = 1, .seed = 8}) != reference);

    // Read from the config or a variable when the run starts.
    const auto configured = numbers(40).pipeline().mark().with_probability(bp::C("augment.p"));
    bp::Config config;
    config.set("augment.p", 0.0);
    auto none = marks(configured.with_config(config), {.batch_size = 1, .seed = 7});
    CHECK(std::count(none.begin(), none.end(), true) == 0);
    config.set("augment.p", 1.0);
    auto all = marks(configured.with_config(config), {.batch_size = 1, .seed = 7});
    CHECK(std::count(all.begin(), all.end(), true) == 40);
    config.set("augment.p", 1.5);
    CHECK_THROWS_WITH(configured.with_config(config).run({}),
                      test::contains("action 'mark'") && test::contains("outside [0, 1]"));

    auto by_variable = numbers(40).pipeline().init_variable("p", 0.5).mark().with_probability(bp::V("p"));
    CHECK(marks(by_variable, {.batch_size = 1, .seed = 7}) == reference);
    by_variable.variable<double>("p").set(0.0);
    auto after_set = marks(by_variable, {.batch_size = 1, .seed = 7});
    CHECK(std::count(after_set.begin(), after_set.end(), true) == 0);

    // Repeated, each round draws its own: three rounds of p = 0.5 mark more batches than one.
    // The same for one seed whatever the prefetch and threads.
    auto rounds = (numbers(40).pipeline().add_one().with_probability(0.5)) * 3;
    auto counts = [&](const bp::RunOptions& options) {
      std::vector<int> result(40);
      for (auto& batch : rounds.gen_batch(options)) {
        if (batch.has("count")) result.at(batch.number()) = batch.get<int>("count");
      }
      return result;
    };
    const auto reference_counts = counts({.batch_size = 1, .seed = 7});
    const auto counted = std::accumulate(reference_counts.begin(), reference_counts.end(), 0);
    CHECK(counted > 40);
    CHECK(counted < 80);
    CHECK(counts({.batch_size = 1, .seed = 7, .prefetch = 3, .threads = 1}) == reference_counts);
    CHECK(counts({.batch_size = 1, .seed = 7, .prefetch = 3, .ordered = false, .threads = 2}) ==
          reference_counts);

    CHECK_THROWS_WITH(numbers(4).pipeline().with_probability(0.5), test::contains("no action"));
    CHECK_THROWS_WITH(numbers(4).pipeline().mark().with_probability(-0.1), test::contains("outside"));
  });
}

TEST_CASE("before- and after-run hooks run once per run, also when it fails", "[flow][errors]") {
  test::finishes_within(60s, [] {
    std::atomic<int> befores{0}, made{0};
    std::vector<bp::RunReport> reports;
    auto hooked = [&](const bp::Pipeline<FlowBatch>& p) {
      return p.before([&] { ++befores; }).after([&](const bp::RunReport& report) {
        reports.push_back(report);
      });
    };
    auto pipeline = hooked(numbers(20).pipeline().count_into(made));
    for (const std::size_t prefetch : {0u, 2u}) {
      befores = 0, made = 0;
      reports.clear();
      const auto stats = pipeline.run({.batch_size = 5, .n_epochs = 2, .prefetch = prefetch});
      CHECK(befores == 1);
      REQUIRE(reports.size() == 1);
      CHECK(!reports[0].failed());
      CHECK(!reports[0].stopped_early);
      CHECK(reports[0].stats.batches == 8);
      CHECK(stats.batches == 8);
    }

    // A failing run: the after hook runs once, told so, and the run's own error reaches the caller.
    reports.clear();
    auto failing = hooked(numbers(20).pipeline().fail_at(2));
    CHECK_THROWS_AS(failing.run({.batch_size = 5, .prefetch = 2}), bp::ActionError);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].failed());
    CHECK(reports[0].stats.batches == 2);

    // A failing before hook: no batch is made, and the after hooks still run.
    made = 0;
    reports.clear();
    auto bad_setup = numbers(20)
                         .pipeline()
                         .count_into(made)
                         .before([] { throw std::runtime_error("no folder"); })
                         .after([&](const bp::RunReport& report) { reports.push_back(report); });
    CHECK_THROWS_WITH(bad_setup.run({.batch_size = 5, .prefetch = 2}), "no folder");
    CHECK(made == 0);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].failed());

    // An after hook failing after a failed run: both errors are told.
    auto both = numbers(20).pipeline().fail_at(1).after(
        [](const bp::RunReport&) { throw std::runtime_error("cannot save"); });
    try {
      both.run({.batch_size = 5});
      FAIL("no exception");
    } catch (const bp::Error& e) {
      const std::string message = test::full_message(e);
      CHECK_THAT(message, test::contains("cannot save") && test::contains("batch 1 is bad"));
    }

    // A stream left early: the hook runs when the stream goes, after the work in flight stopped.
    reports.clear();
    {
      auto stream = pipeline.gen_batch({.batch_size = 2, .prefetch = 3});
      for (auto& batch : stream) {
        if (batch.number() == 1) break;
      }
      CHECK(reports.empty());
    }
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].stopped_early);
    CHECK(reports[0].stats.batches == 2);

    // Pipelines as hooks: an evaluation after, a set-up before.
    std::atomic<int> before_items{0}, after_items{0};
    auto around = numbers(8)
                      .pipeline()
                      .before(numbers(3).pipeline().count_into(before_items), {.batch_size = 1})
                      .after(numbers(5).pipeline().count_into(after_items), {.batch_size = 1});
    (void)around.run({.batch_size = 4});
    CHECK(before_items == 3);
    CHECK(after_items == 5);
  });
}

TEST_CASE("the profile times each action and the consumer's waits, adding up to the run", "[flow][profile]") {
  test::finishes_within(60s, [] {
    // prefetch 0: the consumer does everything, so its rows add up to the run's time.
    auto pipeline = numbers(40).pipeline().sleep_ms(3).step_ms(1);
    auto stats = pipeline.run({.batch_size = 2, .profile = true});
    REQUIRE(stats.profile);
    const bp::Profile& profile = *stats.profile;
    REQUIRE(profile.actions.size() == 3);
    CHECK(profile.actions[0].action == "<create batch>");
    CHECK(profile.actions[1].action == "sleep_ms");
    CHECK(profile.actions[2].action == "step_ms");
    CHECK(profile.actions[1].batches == 20);
    CHECK(profile.actions[1].seconds_on_consumer >= 0.060);
    CHECK(profile.actions[2].seconds_on_consumer >= 0.020);
    CHECK(profile.actions[1].seconds_on_workers == 0.0);
    CHECK(profile.consumer_seconds() <= profile.run_seconds);
    CHECK(profile.consumer_seconds() >= 0.9 * profile.run_seconds);
    CHECK(profile.share(profile.actions[1]) > 0.5);
    const std::string table = profile.table();
    CHECK_THAT(table, test::contains("sleep_ms") && test::contains("consumer waited"));

    // With prefetch, batches made ahead count on the workers, and the consumer's steps and
    // waits still account for its time.
    auto slow = numbers(60).pipeline().sleep_ms(4).step_ms(1);
    stats = slow.run(
        {.batch_size = 2, .prefetch = 2, .threads = 2, .prepare_during_steps = true, .profile = true});
    REQUIRE(stats.profile);
    const auto& rows = stats.profile->actions;
    CHECK(rows[1].batches == 30);
    CHECK(rows[1].seconds() >= 0.120);
    CHECK(stats.profile->consumer_seconds() <= stats.profile->run_seconds);
    CHECK(stats.profile->consumer_seconds() >= 0.9 * stats.profile->run_seconds);
    CHECK(!numbers(4).pipeline().mark().run({}).profile);  // only when asked for
  });
}

TEST_CASE("the progress notifier prints nothing off a terminal and plots its variables", "[flow][progress]") {
  const auto folder =
      std::filesystem::temp_directory_path() / ("batchpipe_progress_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  const auto plot = folder / "run.svg";
  std::FILE* log = std::tmpfile();
  REQUIRE(log);
  auto pipeline = numbers(100)
                      .pipeline()
                      .init_variable("loss", 0.0)
                      .init_variable("accuracy", bp::Accuracy{})
                      .init_variable("name", std::string("x"))
                      .track();
  const auto stats = pipeline.run({.batch_size = 10,
                                   .n_epochs = 2,
                                   .prefetch = 2,
                                   .progress = bp::Progress{.variables = {"loss", "accuracy"},
                                                            .stream = log,
                                                            .plot = plot,
                                                            .plot_width = 640,
                                                            .plot_height = 200}});
  CHECK(stats.batches == 20);
  CHECK(std::ftell(log) == 0);  // not a terminal: nothing printed
  std::fclose(log);

  const std::string svg = read_file(plot);
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK_THAT(svg, test::contains("width=\"640\" height=\"400\""));
  CHECK(svg.size() > 200);
  CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
  CHECK(occurrences(svg, "<polyline") == 2);
  CHECK(occurrences(svg, "<text") == occurrences(svg, "</text>"));
  CHECK_THAT(svg, test::contains(">loss</text>") && test::contains(">accuracy</text>"));
  // 20 points per line: the first (batch 1, loss 1) at the top left of the first panel.
  const auto first_line = svg.substr(svg.find("<polyline"));
  CHECK(occurrences(first_line.substr(0, first_line.find("/>")), ",") == 20);

  // A variable the pipeline lacks, or one with no number to show, is an error before any batch.
  CHECK_THROWS_WITH(pipeline.run({.progress = bp::Progress{.variables = {"los"}}}),
                    test::contains("no pipeline variable 'los'"));
  CHECK_THROWS_WITH(pipeline.run({.progress = bp::Progress{.variables = {"name"}}}),
                    test::contains("'name'") && test::contains("not a number"));
  std::filesystem::remove_all(folder);
}

TEST_CASE("the progress line shows progress, rate, time left and the variables", "[flow][progress]") {
  bp::RunStats done;
  done.batches = 5;
  done.items = 500;
  const auto line = bp::detail::progress_line(done, bp::detail::PlannedRun{10, 1000}, 2.0,
                                              {{"loss", 0.25}, {"x", std::nullopt}});
  CHECK_THAT(line, test::contains(" 50%") && test::contains("500/1000 items") &&
                       test::contains("5/10 batches") && test::contains("250 items/s") &&
                       test::contains("0:02 left") && test::contains("loss 0.25"));
  CHECK_THAT(line, !test::contains(" x "));
  // A variable's name reaches the terminal and the plot as text, never as control codes.
  const auto hostile = bp::detail::progress_line(done, std::nullopt, 1.0, {{"\x1b[2Jloss\n", 1.0}});
  CHECK_THAT(hostile, test::contains("\\x1b[2Jloss\\x0a 1"));
  CHECK(hostile.find('\x1b') == std::string::npos);
  const auto svg = bp::detail::svg_plot({{"a\x01<b>&\xff\"", {{0, 1}, {1, 2}}}}, 200, 100, "x\x7f");
  CHECK_THAT(svg,
             test::contains(">a\\x01&lt;b&gt;&amp;\\xff&quot;</text>") && test::contains(">x\\x7f</text>"));
  CHECK(bp::detail::printable("точность \xe2\x82") == "точность \\xe2\\x82");
  // Overlong forms, surrogates and C1 controls (U+009B is a terminal's CSI) are not let through.
  CHECK(bp::detail::printable("\xc0\xaf\xed\xa0\x80\xc2\x9b\xc2\xa0") ==
        "\\xc0\\xaf\\xed\\xa0\\x80\\xc2\\x9b\xc2\xa0");
  const auto endless = bp::detail::progress_line(done, std::nullopt, 3725.0, {});
  CHECK_THAT(endless, test::contains("500 items 5 batches") && test::contains("1:02:05"));
  const auto planned = bp::detail::planned_run(10, {.batch_size = 4, .n_epochs = 3});
  REQUIRE(planned);
  CHECK(planned->batches == 9);
  CHECK(planned->items == 30);
  const auto dropped = bp::detail::planned_run(10, {.batch_size = 4, .n_epochs = 3, .drop_last = true});
  CHECK(dropped->batches == 6);
  CHECK(dropped->items == 24);
  CHECK(!bp::detail::planned_run(10, {.n_epochs = bp::endless}));
}

TEST_CASE("variables show as numbers when they hold one", "[flow][progress]") {
  auto variables = bp::Variables()
                       .with("loss", 0.5f)
                       .with("steps", 3)
                       .with("history", std::vector<double>{1.0, 2.0})
                       .with("empty", std::vector<double>{})
                       .with("accuracy", bp::Accuracy{3, 4})
                       .with("name", std::string("abc"));
  CHECK(variables.number("loss") == 0.5);
  CHECK(variables.number("steps") == 3.0);
  CHECK(variables.number("history") == 2.0);
  CHECK(!variables.number("empty"));
  CHECK(variables.number("accuracy") == 0.75);
  CHECK(!variables.number("name"));
  CHECK(!variables.number("missing"));
  const auto optional = bp::Variables().with("maybe", std::optional<double>{});
  CHECK(!optional.is_numeric("maybe"));  // an optional's value() would throw when empty
  CHECK(!optional.number("maybe"));
}

TEST_CASE("rebatch re-cuts the stream: every item once, in order, each epoch's remainder last",
          "[flow][rebatch]") {
  test::finishes_within(120s, [] {
    constexpr std::size_t n = 23;
    for (const std::size_t in : {1u, 3u, 7u}) {
      for (const std::size_t out : {1u, 2u, 5u, 8u, 30u}) {
        for (const bool drop_last : {false, true}) {
          for (const std::size_t prefetch : {0u, 2u}) {
            INFO("in " << in << " out " << out << " drop_last " << drop_last << " prefetch " << prefetch);
            std::vector<std::size_t> sizes;
            auto pipeline = numbers(n).pipeline().load_ids().rebatch(out).record_size(sizes);
            std::vector<std::vector<std::int64_t>> epochs(2);
            std::size_t number = 0;
            for (auto& batch : pipeline.gen_batch(
                     {.batch_size = in, .n_epochs = 2, .drop_last = drop_last, .prefetch = prefetch})) {
              CHECK(batch.number() == number++);
              const auto x = values_of(batch.get("x"));
              CHECK(x == ids_of(batch.index()));  // the index follows the items
              CHECK(values_of(batch.get("y").select(1, 1)) == values_of(batch.get("x") * 3));
              auto& seen = epochs.at(batch.epoch());
              seen.insert(seen.end(), x.begin(), x.end());
            }
            const std::size_t upstream = drop_last ? n / in * in : n;
            const std::size_t kept = drop_last ? upstream / out * out : upstream;
            std::vector<std::int64_t> expected(kept);
            std::iota(expected.begin(), expected.end(), 0);
            CHECK(epochs[0] == expected);
            CHECK(epochs[1] == expected);
            // Every batch is full but each epoch's last, which holds the remainder.
            std::vector<std::size_t> expected_sizes;
            for (int epoch = 0; epoch < 2; ++epoch) {
              for (std::size_t i = 0; i < kept / out; ++i) expected_sizes.push_back(out);
              if (kept % out) expected_sizes.push_back(kept % out);
            }
            CHECK(sizes == expected_sizes);
          }
        }
      }
    }
  });
}

TEST_CASE("rebatch keeps shuffled items, leaves out skipped ones, and names what it cannot join",
          "[flow][rebatch]") {
  test::finishes_within(60s, [] {
    auto pipeline = numbers(40).pipeline().skip_multiples(4).load_ids().rebatch(6).times_ten();
    auto stream = pipeline.gen_batch({.batch_size = 5, .shuffle = 3, .prefetch = 3});
    std::vector<std::int64_t> seen;
    for (auto& batch : stream) {
      const auto x = values_of(batch.get("x"));
      CHECK(x == ids_of(batch.index()));
      CHECK(values_of(batch.get("z")) == values_of(batch.get("x") * 10));  // the action after it ran
      seen.insert(seen.end(), x.begin(), x.end());
    }
    CHECK(stream.stats().skipped == 2);  // batches 0 and 4 of 8
    CHECK(seen.size() == 30);
    CHECK(std::set<std::int64_t>(seen.begin(), seen.end()).size() == 30);
    CHECK(pipeline.action_names() ==
          std::vector<std::string>{"skip_multiples", "load_ids", "rebatch", "times_ten"});

    CHECK_THROWS_WITH(
        numbers(10).pipeline().load_ids().name_items().rebatch(4).run({.batch_size = 3}),
        test::contains("rebatch(4): component 'names'") && test::contains("only tensor components"));
    CHECK_THROWS_WITH(numbers(10).pipeline().rebatch(0), test::contains("at least 1"));
    // One batch cut smaller is checked as well; a per-batch tensor is not per-item data.
    CHECK_THROWS_WITH(numbers(10).pipeline().load_ids().name_items().rebatch(4).run({.batch_size = 5}),
                      test::contains("component 'names'") && test::contains("only tensor components"));
    CHECK_THROWS_WITH(numbers(10).pipeline().load_ids().set_mean().rebatch(4).run({.batch_size = 3}),
                      test::contains("component 'mean' of shape []") && test::contains("one row per item"));
    CHECK_THROWS_WITH(numbers(10).pipeline().rebatch(4).with_probability(0.5),
                      test::contains("not an action"));

    // The batches a rebatch makes belong to the run: its variables and config.
    bp::Config config;
    config.set("k", 10);
    auto reading =
        numbers(23).pipeline().init_variable("v", 5).load_ids().rebatch(5).read_context().with_config(config);
    std::size_t read = 0;
    for (auto& batch : reading.gen_batch({.batch_size = 3, .prefetch = 2})) {
      CHECK(batch.get<int>("context") == 15);
      ++read;
    }
    CHECK(read == 5);

    // Unordered upstream: a rebatch still sees each epoch whole, so drop_last drops only the
    // remainders.
    std::vector<std::int64_t> unordered;
    for (auto& batch : numbers(23).pipeline().load_ids().jitter_free().rebatch(4).gen_batch({.batch_size = 3,
                       .n_epochs = 2,
                       .shuffle = 5,
                       .drop_last = true,
                       .prefetch = 3,
                       .ordered = false})) {
      const auto x = values_of(batch.get("x"));
      unordered.insert(unordered.end(), x.begin(), x.end());
    }
    CHECK(unordered.size() == 2 * (21 / 4 * 4));

    // An endless run whose epochs are all smaller than the rebatch, dropped: it ends at once
    // instead of pulling epoch after epoch (it once spun forever before its first batch).
    for (const std::size_t prefetch : {0u, 2u}) {
      std::size_t endless_batches = 0;
      for (auto& batch : numbers(5).pipeline().load_ids().rebatch(8).gen_batch(
               {.batch_size = 2, .n_epochs = bp::endless, .drop_last = true, .prefetch = prefetch})) {
        (void)batch;
        ++endless_batches;
      }
      CHECK(endless_batches == 0);
    }
    // ... and one whose epochs give batches goes on past them.
    std::size_t taken = 0;
    for (auto& batch : numbers(10).pipeline().load_ids().rebatch(4).gen_batch(
             {.batch_size = 2, .n_epochs = bp::endless, .drop_last = true})) {
      CHECK(batch.size() == 4);
      if (++taken == 7) break;
    }
    CHECK(taken == 7);

    // An error in a step after the rebatch: the after hook runs once, the error reaches the caller.
    int afters = 0;
    CHECK_THROWS_AS(numbers(40)
                        .pipeline()
                        .load_ids()
                        .rebatch(4)
                        .fail_at(3)
                        .after([&](const bp::RunReport& report) { afters += report.failed() ? 1 : 100; })
                        .run({.batch_size = 2, .prefetch = 4}),
                    bp::ActionError);
    CHECK(afters == 1);
  });
}

TEST_CASE("merge puts the batches of pipelines over the same items side by side", "[flow][merge]") {
  test::finishes_within(60s, [] {
    const auto data = numbers(30);
    auto first = data.pipeline().load_ids();
    auto second = data.pipeline().load_ids().times_ten().init_variable("seen", 0);
    std::vector<std::size_t> sizes;
    auto merged = bp::merge(first, second).record_size(sizes);
    CHECK(merged.variables().contains("seen"));
    std::size_t batches = 0;
    for (auto& batch : merged.gen_batch({.batch_size = 4, .n_epochs = 2, .shuffle = 9, .prefetch = 2})) {
      CHECK(values_of(batch.get("z")) == values_of(batch.get("x") * 10));
      CHECK(values_of(batch.get("x")) == ids_of(batch.index()));
      CHECK(batch.number() == batches++);
    }
    CHECK(batches == 16);
    CHECK(sizes.size() == 16);

    // Different items: the first difference is named.
    auto skipping = data.pipeline().skip_multiples(2).load_ids();
    CHECK_THROWS_WITH(bp::merge(first, skipping).run({.batch_size = 5}),
                      test::contains("merge: batch 0: pipeline 2 has item '5' at position 0 where "
                                     "pipeline 1 has '0'"));
    CHECK_THROWS_WITH(bp::merge(first, numbers(40).pipeline()).run({.batch_size = 10}),
                      test::contains("pipeline 1 ended after 3 batches while pipeline 2 goes on"));
    CHECK_THROWS_WITH(bp::merge(std::vector{first}), test::contains("two pipelines or more"));

    // The configs of all, the first's value where several have one (as operator+ does).
    const auto configured = bp::merge(first.with_config(bp::Config::parse(R"({"a": 1, "b": {"x": 1}})")),
                                      second.with_config(bp::Config::parse(R"({"b": {"x": 2, "y": 2}})")),
                                      data.pipeline().with_config(bp::Config::parse(R"({"c": 3})")));
    CHECK(configured.config() == bp::Config::parse(R"({"a": 1, "b": {"x": 1, "y": 2}, "c": 3})"));

    // Unordered runs pair the same batches; skips made alike in both are counted once.
    auto skip_a = data.pipeline().skip_multiples(3).load_ids();
    auto skip_b = data.pipeline().skip_multiples(3).times_ten_of_ids();
    auto both = bp::merge(skip_a, skip_b).gen_batch({.batch_size = 2, .prefetch = 3, .ordered = false});
    std::size_t merged_batches = 0;
    for (auto& batch : both) {
      CHECK(values_of(batch.get("z")) == values_of(batch.get("x") * 10));
      ++merged_batches;
    }
    CHECK(merged_batches == 10);
    CHECK(both.stats().skipped == 5);
  });
}

TEST_CASE("join brings a component of another dataset's batch for the same items, by id", "[flow][join]") {
  test::finishes_within(60s, [] {
    // The labels live in a dataset of another class, its ids in another order.
    std::vector<std::int64_t> ids(25);
    std::iota(ids.begin(), ids.end(), 0);
    std::reverse(ids.begin(), ids.end());
    const auto labels = at::tensor(ids, at::kLong) + 100;  // row i holds id ids[i]: label = id + 100
    bp::Dataset<LabelBatch> label_data(bp::Index(ids), {{"label", labels}});

    auto pipeline =
        numbers(20).pipeline().load_ids().join(label_data.pipeline().double_label(), {"label", "twice"});
    for (const std::size_t prefetch : {0u, 2u}) {
      std::size_t items = 0;
      for (auto& batch : pipeline.gen_batch({.batch_size = 6, .shuffle = 4, .prefetch = prefetch})) {
        CHECK(values_of(batch.get("label")) == values_of(batch.get("x") + 100));
        CHECK(values_of(batch.get("twice")) == values_of((batch.get("x") + 100) * 2));
        items += batch.size();
      }
      CHECK(items == 20);
    }
    CHECK(numbers(3).pipeline().join(label_data, {"label"}).action_names() ==
          std::vector<std::string>{"join"});

    CHECK_THROWS_WITH(
        numbers(30).pipeline().join(label_data, {"label"}).run({.batch_size = 10}),
        test::contains("join: item '25' (position 5 of the batch) is not in the joined dataset"));
    CHECK_THROWS_WITH(numbers(5).pipeline().join(label_data, {"mask"}).run({.batch_size = 5}),
                      test::contains("no component 'mask' (components: label)"));
    CHECK_THROWS_WITH(numbers(5).pipeline().join(label_data.pipeline().rebatch(2), {"label"}),
                      test::contains("may not rebatch"));
  });
}

TEST_CASE("shards of a run share each epoch out: disjoint, complete, equal batch counts", "[flow][shard]") {
  // In one process, each shard run in turn: what the ranks of a distributed job get.
  for (const std::size_t n_items :
       {std::size_t{0}, std::size_t{1}, std::size_t{12}, std::size_t{13}, std::size_t{25}}) {
    for (const std::size_t count : {std::size_t{1}, std::size_t{2}, std::size_t{3}}) {
      for (const bool drop_last : {false, true}) {
        INFO(n_items << " items, " << count << " shards, drop_last " << drop_last);
        const std::size_t batch_size = 4, epochs = 2;
        std::vector<std::vector<std::vector<std::int64_t>>> shards(count);
        for (std::size_t rank = 0; rank < count; ++rank) {
          const bp::RunOptions options{.batch_size = batch_size,
                                       .n_epochs = epochs,
                                       .shuffle = 5,
                                       .drop_last = drop_last,
                                       .prefetch = rank % 2 ? 2u : 0u,
                                       .shard = bp::Shard{rank, count}};
          numbers(n_items).pipeline().record_ids(std::ref(shards[rank])).run(options);
          // The progress bar's plan agrees with what the shard got.
          const auto planned = bp::detail::planned_run(n_items, options);
          std::size_t items = 0;
          for (const auto& batch : shards[rank]) items += batch.size();
          CHECK(planned->batches == shards[rank].size());
          CHECK(planned->items == items);
        }
        const std::size_t per_epoch = shards[0].size() / epochs;
        for (const auto& shard : shards) {
          REQUIRE(shard.size() == per_epoch * epochs);  // equal batch counts
          for (const auto& batch : shard) CHECK(batch.size() <= batch_size);
        }
        const std::size_t step = batch_size * count;
        const std::size_t covered = drop_last ? n_items / step * step : n_items;
        for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
          std::multiset<std::int64_t> seen;
          for (const auto& shard : shards) {
            for (std::size_t b = epoch * per_epoch; b < (epoch + 1) * per_epoch; ++b)
              seen.insert(shard[b].begin(), shard[b].end());
          }
          CHECK(seen.size() == covered);
          CHECK(std::set<std::int64_t>(seen.begin(), seen.end()).size() == covered);  // each once
        }
        // One shard of one is the run without shards.
        if (count == 1) {
          std::vector<std::vector<std::int64_t>> plain;
          numbers(n_items)
              .pipeline()
              .record_ids(std::ref(plain))
              .run({.batch_size = batch_size, .n_epochs = epochs, .shuffle = 5, .drop_last = drop_last});
          CHECK(plain == shards[0]);
        }
      }
    }
  }
  // 13 items, 3 shards of batches of 4: one full step (12), then 1 item: ranks 1 and 2 get an
  // empty last batch rather than one batch fewer.
  std::vector<std::vector<std::int64_t>> last;
  numbers(13).pipeline().record_ids(std::ref(last)).run({.batch_size = 4, .shard = bp::Shard{2, 3}});
  REQUIRE(last.size() == 2);
  CHECK(last[1].empty());
  CHECK_THROWS_WITH(numbers(4).pipeline().run({.shard = bp::Shard{3, 3}}),
                    test::contains("shard 3 of 3 does not exist"));
  // batch_size * shard count past a size's range: an error, not a wrapped step of 0 or 2 items.
  CHECK_THROWS_WITH(numbers(24).pipeline().run({.batch_size = SIZE_MAX / 3 + 1, .shard = bp::Shard{1, 3}}),
                    test::contains("times the shard count 3 is more items per step than a size can hold"));
  // Every shard applies a probabilistic step to the same batches (so the ranks of a job make the
  // same training steps), while their batches' random streams differ.
  std::vector<std::vector<std::size_t>> applied(3);
  std::vector<std::uint64_t> draws;
  for (std::size_t rank = 0; rank < 3; ++rank) {
    auto stream = numbers(60)
                      .pipeline()
                      .record(std::ref(applied[rank]))
                      .with_probability(0.5)
                      .gen_batch({.batch_size = 2, .shuffle = 9, .shard = bp::Shard{rank, 3}});
    draws.push_back(stream.next()->random()());
    while (stream.next()) {}
  }
  CHECK(applied[0] == applied[1]);
  CHECK(applied[1] == applied[2]);
  CHECK(applied[0].size() > 0);
  CHECK(applied[0].size() < 10);
  CHECK((draws[0] != draws[1] || draws[1] != draws[2]));
  CHECK_THROWS_WITH(numbers(8).pipeline().mark().with_probability(0.5).run({.shard = bp::Shard{0, 2}}),
                    test::contains("probabilistic steps needs a seed shared by every shard"));
  numbers(8).pipeline().mark().with_probability(0.5).run({.seed = 3, .shard = bp::Shard{0, 2}});
  CHECK_THROWS_WITH(numbers(8).pipeline().rebatch(3).run({.shard = bp::Shard{0, 2}}),
                    test::contains("a rebatch would cut each shard into its own number of batches"));
}
