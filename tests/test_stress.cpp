// Stress: many randomly generated pipelines and runs, with injected faults, each checked for
// exactly-once delivery, order, the right exception, no singleton overlap, and completion under
// a watchdog that names the case's seed instead of hanging.
#include "support.hpp"

#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>

namespace {

using namespace std::chrono_literals;

struct Faults {
  std::set<std::size_t> on_workers;   // batch numbers at which a parallel action throws
  std::set<std::size_t> on_consumer;  // batch numbers at which a singleton action throws
};

struct StressBatch : bp::Batch<StressBatch> {
  MODEL(counter)() { return 0L; }
  ACTION(nap)(int max_us) {
    std::this_thread::sleep_for(std::chrono::microseconds(random().below(max_us + 1)));
  }
  ACTION(replace)() {  // a new batch of the same items, as an action may return
    StressBatch fresh;
    fresh.set("x", get("x").clone());
    return fresh;
  }
  ACTION(fail_on_worker)(const Faults& faults) {
    if (faults.on_workers.count(number())) throw std::runtime_error("injected fault on a worker");
  }
  ACTION(exclusive, .singleton = true)(test::ConcurrencyProbe& probe) {
    test::ConcurrencyProbe::Scope scope(probe);
    std::this_thread::sleep_for(std::chrono::microseconds(random().below(50)));
  }
  ACTION(count, .model = "counter", .singleton = true)(long& counter) { ++counter; }
  ACTION(fail_on_consumer, .singleton = true)(const Faults& faults) {
    if (faults.on_consumer.count(number())) throw std::runtime_error("injected fault on the consumer");
  }
};

struct NestingBatch : bp::Batch<NestingBatch> {
  ACTION(run_inner)(bp::RunOptions options) {
    auto inner = bp::Dataset<StressBatch>(6, {{"x", at::arange(6)}}).pipeline().nap(100);
    if (inner.run(options).items != 6 * options.n_epochs.value_or(1))
      throw std::logic_error("inner run lost items");
  }
};

/// One random case: a pipeline, run options, faults and a way of consuming.
struct Case {
  std::uint64_t seed;
  std::size_t items, batch_size, epochs, prefetch, threads;
  bool endless, drop_last, ordered;
  int nap_us;
  bool replace, exclusive, model;
  Faults faults;
  std::size_t break_after;  // deliveries before the consumer drops the stream; SIZE_MAX: never
  std::string describe() const {
    std::ostringstream text;
    text << "seed " << seed << ": " << items << " items, batch " << batch_size << ", epochs "
         << (endless ? std::string("endless") : std::to_string(epochs)) << ", prefetch " << prefetch
         << ", threads " << threads << (drop_last ? ", drop_last" : "") << (ordered ? "" : ", unordered")
         << ", faults " << faults.on_workers.size() << "+" << faults.on_consumer.size() << ", break after "
         << (break_after == SIZE_MAX ? std::string("never") : std::to_string(break_after));
    return text.str();
  }
};

Case random_case(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::size_t low, std::size_t high) {
    return std::uniform_int_distribution<std::size_t>(low, high)(rng);
  };
  Case c{};
  c.seed = seed;
  c.items = pick(0, 3) == 0 ? pick(0, 1) : pick(2, 40);
  c.batch_size = pick(1, 8);
  c.epochs = pick(1, 3);
  c.endless = pick(0, 9) == 0;
  c.drop_last = pick(0, 3) == 0;
  c.ordered = pick(0, 3) != 0;
  c.prefetch = pick(0, 4);
  c.threads = pick(1, 4);
  c.nap_us = static_cast<int>(pick(0, 200));
  c.replace = pick(0, 2) == 0;
  c.exclusive = pick(0, 1) == 0;
  c.model = pick(0, 1) == 0;
  const std::size_t batches = c.items / c.batch_size + 1;
  for (std::size_t f = pick(0, 2); f > 0; --f) {
    (pick(0, 1) ? c.faults.on_workers : c.faults.on_consumer).insert(pick(0, batches * c.epochs));
  }
  c.break_after = pick(0, 3) == 0 || c.endless ? pick(0, batches * 2) : SIZE_MAX;
  return c;
}

/// The batches a run of the case makes, in order: their numbers and item positions.
std::vector<std::vector<std::int64_t>> expected_batches(const Case& c, std::size_t limit) {
  std::vector<std::vector<std::int64_t>> all;
  bp::detail::BatchSampler sampler(c.items, {.batch_size = c.batch_size,
                                             .n_epochs = c.endless ? bp::endless : std::optional(c.epochs),
                                             .shuffle = c.seed,
                                             .drop_last = c.drop_last});
  while (all.size() < limit) {
    auto plan = sampler.next();
    if (!plan) break;
    all.emplace_back(plan->positions.begin(), plan->positions.end());
  }
  return all;
}

/// Runs the case and says what went wrong (nothing when every guarantee held). It asserts
/// nothing itself: cases run on several threads at once, and Catch's assertions are for one.
std::vector<std::string> run_case(const Case& c) {
  std::vector<std::string> problems;
  auto expect = [&](bool holds, const std::string& what) {
    if (!holds) problems.push_back(c.describe() + ": " + what);
  };
  bp::Dataset<StressBatch> dataset(c.items, {{"x", at::arange(static_cast<std::int64_t>(c.items))}});
  test::ConcurrencyProbe probe;
  auto pipeline = dataset.pipeline().nap(c.nap_us).fail_on_worker(c.faults);
  if (c.replace) pipeline = pipeline.replace();
  if (c.exclusive) pipeline = pipeline.exclusive(probe);
  if (c.model) pipeline = pipeline.count();
  pipeline = pipeline.fail_on_consumer(c.faults);

  // The batches a run makes, in order, as far as the consumer can get (an unordered run may
  // deliver up to prefetch + 1 batches ahead of the ones before them), and the first fault.
  const auto planned = expected_batches(c, std::min<std::size_t>(c.break_after, 10000) + c.prefetch + 2);
  std::optional<std::size_t> first_fault;
  for (std::size_t number = 0; number < planned.size() && !first_fault; ++number) {
    if (c.faults.on_workers.count(number) || c.faults.on_consumer.count(number)) first_fault = number;
  }

  std::vector<std::size_t> delivered;
  std::optional<std::size_t> failed_at;
  std::string failed_action;
  auto stream = pipeline.gen_batch({.batch_size = c.batch_size,
                                    .n_epochs = c.endless ? bp::endless : std::optional(c.epochs),
                                    .shuffle = c.seed,
                                    .drop_last = c.drop_last,
                                    .prefetch = c.prefetch,
                                    .ordered = c.ordered,
                                    .threads = c.threads});
  try {
    while (delivered.size() < c.break_after) {
      auto batch = stream.next();
      if (!batch) break;
      const auto number = batch->number();
      if (number >= planned.size()) {
        expect(false, "batch " + std::to_string(number) + " was never planned");
        return problems;
      }
      const auto x = batch->get("x");
      expect(std::vector<std::int64_t>(x.data_ptr<std::int64_t>(), x.data_ptr<std::int64_t>() + x.numel()) ==
                 planned[number],
             "batch " + std::to_string(number) + " holds other items than planned");
      delivered.push_back(number);
    }
  } catch (const bp::ActionError& e) {
    failed_at = e.batch_number();
    failed_action = e.action();
    expect(!stream.next() && !stream.next(), "the stream goes on after an error");
  }
  expect(probe.highest <= 1, "singleton actions overlapped");

  const std::set<std::size_t> unique(delivered.begin(), delivered.end());
  expect(unique.size() == delivered.size(), "a batch was delivered twice");
  std::vector<std::size_t> in_order(delivered.size());
  std::iota(in_order.begin(), in_order.end(), 0);
  if (failed_at) {
    expect(first_fault.has_value(), "an error without an injected fault");
    expect(c.faults.on_workers.count(*failed_at) + c.faults.on_consumer.count(*failed_at) > 0,
           "the error names batch " + std::to_string(*failed_at) + ", which has no fault");
    expect(failed_action == "fail_on_worker" || failed_action == "fail_on_consumer",
           "the error names action " + failed_action);
    expect(unique.count(*failed_at) == 0, "the failing batch was delivered");
    if (c.ordered) {
      expect(first_fault && *failed_at == *first_fault, "the error is not the first fault's");
      expect(delivered == in_order && delivered.size() == *failed_at,
             "not every batch before the failing one was delivered, in order");
    }
    return problems;
  }
  // No error: every batch up to the consumer's break or the end, once; in order when ordered.
  if (c.ordered) {
    expect(!first_fault || *first_fault >= delivered.size(), "a fault was skipped");
    expect(delivered == in_order, "batches out of order");
    if (c.break_after == SIZE_MAX) expect(delivered.size() == planned.size(), "batches were lost");
  } else if (c.break_after == SIZE_MAX) {
    expect(unique.size() == planned.size(), "batches were lost");
  }
  return problems;
}

/// run_case, with any exception other than the run's ActionError reported as a problem (it must
/// not escape a thread, which would end the program without naming the case).
std::vector<std::string> run_case_reporting(const Case& c) {
  try {
    return run_case(c);
  } catch (const std::exception& e) {
    return {c.describe() + ": unexpected exception: " + bp::error_message(e)};
  }
}

/// Fails the test with every problem found.
void check(const std::vector<std::string>& problems) {
  for (const auto& problem : problems) FAIL_CHECK(problem);
}

/// A count from the environment, or `fallback`.
std::uint64_t from_environment(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  return text ? std::strtoull(text, nullptr, 10) : fallback;
}

}  // namespace

// BATCHPIPE_STRESS_CASES=N runs N cases (300 by default); BATCHPIPE_STRESS_SEED=S replays the
// one case of seed S (a failure names it).
TEST_CASE("random pipelines with injected faults keep every guarantee", "[stress]") {
  const std::uint64_t first = from_environment("BATCHPIPE_STRESS_SEED", 1);
  const std::uint64_t cases =
      std::getenv("BATCHPIPE_STRESS_SEED") ? 1 : from_environment("BATCHPIPE_STRESS_CASES", 300);
  std::size_t faults = 0;
  for (std::uint64_t seed = first; seed < first + cases; ++seed) {
    const Case c = random_case(seed);
    faults += c.faults.on_workers.size() + c.faults.on_consumer.size();
    std::vector<std::string> problems;
    test::finishes_within(
        60s, [&] { problems = run_case_reporting(c); }, c.describe());
    check(problems);
  }
  std::printf("stress: %llu random pipelines, %zu injected faults\n", static_cast<unsigned long long>(cases),
              faults);
}

TEST_CASE("random runs side by side and nested keep every guarantee", "[stress]") {
  for (std::uint64_t seed = 1001; seed <= 1040; ++seed) {
    const Case a = random_case(seed), b = random_case(seed + 5000);
    std::vector<std::string> problems_a, problems_b;
    test::finishes_within(
        60s,
        [&] {
          std::thread other([&] { problems_b = run_case_reporting(b); });
          problems_a = run_case_reporting(a);
          other.join();
        },
        a.describe() + " beside " + b.describe());
    check(problems_a);
    check(problems_b);
  }
  for (std::size_t outer_prefetch : {0, 1, 3}) {
    for (std::size_t inner_prefetch : {0, 2}) {
      bp::RunStats stats;
      test::finishes_within(60s, [&] {
        stats = bp::Dataset<NestingBatch>(12)
                    .pipeline()
                    .run_inner(bp::RunOptions{.batch_size = 2, .prefetch = inner_prefetch, .threads = 2})
                    .run({.batch_size = 1, .prefetch = outer_prefetch, .threads = 3});
      });
      CHECK(stats.batches == 12);
    }
  }
}
