// Execution: prefetch, ordering, singleton actions, errors, early stops, seeds, thread budget.
#include "support.hpp"

#include <oneapi/tbb/global_control.h>

#include <sys/resource.h>

// The sanitizers bring their own malloc, which glibc's thresholds do not govern.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BATCHPIPE_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define BATCHPIPE_TEST_SANITIZED 1
#endif
#endif
#ifndef BATCHPIPE_TEST_SANITIZED
#define BATCHPIPE_TEST_SANITIZED 0
#endif

#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct Probes {
  test::ConcurrencyProbe singleton;
  test::ConcurrencyProbe parallel;
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  std::atomic<int> intra_op_threads{0};  // the count the last batch saw
  std::atomic<int> blas_threads{0};      // OpenBLAS's pool as the consumer's last step saw it
  test::ConcurrencyProbe alive;          // batches in memory: made and not yet freed
  const std::thread::id consumer = std::this_thread::get_id();
  std::mutex mutex;
  std::set<int> worker_intra_op_threads;  // the counts seen by batches made on workers
};

struct ExecBatch : bp::Batch<ExecBatch> {
  ACTION(work)(Probes& probes, int sleep_ms) {
    ++probes.started;
    test::ConcurrencyProbe::Scope scope(probes.parallel);
    probes.intra_op_threads = at::get_num_threads();
    if (std::this_thread::get_id() != probes.consumer) {
      std::scoped_lock lock(probes.mutex);
      probes.worker_intra_op_threads.insert(at::get_num_threads());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    ++probes.finished;
  }
  ACTION(count_alive)(Probes& probes) {  // a component freed with the last copy of the batch
    auto scope = std::make_shared<test::ConcurrencyProbe::Scope>(probes.alive);
    (*this)["alive"] = at::from_blob(
        new float[1], {1},
        [scope](void* data) mutable {
          delete[] static_cast<float*>(data);
          scope.reset();
        },
        at::kFloat);
  }
  ACTION(jitter)() {  // uneven durations, so that batches finish out of order
    std::this_thread::sleep_for(std::chrono::milliseconds(random().below(15)));
  }
  ACTION(exclusive, .singleton = true)(Probes& probes) {
    test::ConcurrencyProbe::Scope scope(probes.singleton);
    std::this_thread::sleep_for(2ms);
  }
  ACTION(fail_on, .singleton = true)(std::size_t number) {
    if (this->number() == number) throw std::invalid_argument("bad item in batch " + std::to_string(number));
  }
  ACTION(fail_fast)(std::size_t failing) {  // the failing batch is done long before the others
    if (number() == failing) throw std::invalid_argument("bad item in batch " + std::to_string(failing));
    std::this_thread::sleep_for(20ms);
  }
  ACTION(fail_slowly)(std::size_t failing) {  // the batches behind the failing one finish first
    if (number() != failing) return;
    std::this_thread::sleep_for(150ms);
    throw std::invalid_argument("bad item in batch " + std::to_string(failing));
  }
  ACTION(finish_on_consumer, .singleton = true)(Probes& probes) {
    probes.intra_op_threads = at::get_num_threads();
    const auto& openblas = bp::detail::OpenBlasApi::get();
    if (openblas.get_num_threads) probes.blas_threads = openblas.get_num_threads();
  }
  ACTION(record, .singleton = true)(std::vector<std::size_t>& order) { order.push_back(number()); }
  ACTION(mismatch)() { set("product", at::ones({2, 3}).matmul(at::ones({2, 3}))); }  // LibTorch throws
  ACTION(draw)() {
    set("uniform", random().uniform());
    set("tensor", at::rand({3}, random().torch_generator()));
  }
};

bp::Dataset<ExecBatch> numbers(std::size_t n) { return bp::Dataset<ExecBatch>(n); }

// What the workers do while the consumer's steps run.
struct StepProbe {
  std::atomic<int> actions_started{0};     // by batches made ahead
  std::atomic<int> most_during_a_step{0};  // actions started during one step, at most
  std::atomic<int> steps_with_overlap{0};  // steps during which some action started
};
struct GatedBatch : bp::Batch<GatedBatch> {
  ACTION(prepare)(StepProbe& probe) { ++probe.actions_started; }
  // Waits `ms`, or until a batch action starts when `until_overlap` (then no longer than `ms`,
  // and only until the first overlap is seen, to keep the test short).
  ACTION(step, .singleton = true)(StepProbe& probe, int ms, bool until_overlap) {
    if (until_overlap && probe.steps_with_overlap > 0) return;
    const int before = probe.actions_started;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end && !(until_overlap && probe.actions_started > before))
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    const int during = probe.actions_started - before;
    if (during > 0) ++probe.steps_with_overlap;
    probe.most_during_a_step = std::max(probe.most_during_a_step.load(), during);
  }
  // Inside WorkersMayPrepare (as an optimizer's update is in train_step), waits until two batch
  // actions have started (at most `ms`): more than the one a worker may have under way when a
  // step begins. Once: after the first such step it returns at once.
  ACTION(step_with_an_update, .singleton = true)(StepProbe& probe, int ms) {
    if (probe.steps_with_overlap > 0) return;
    const bp::WorkersMayPrepare update;
    const int before = probe.actions_started;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end && probe.actions_started < before + 2)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    const int during = probe.actions_started - before;
    if (during >= 2) ++probe.steps_with_overlap;
    probe.most_during_a_step = std::max(probe.most_during_a_step.load(), during);
  }
};

// A run inside an action of another run: an evaluation pipeline inside a training step, say.
struct InnerBatch : bp::Batch<InnerBatch> {
  ACTION(nap)() { std::this_thread::sleep_for(200us); }
};
struct OuterBatch : bp::Batch<OuterBatch> {
  ACTION(run_inner)(bp::RunOptions inner, std::atomic<int>& inner_batches) {
    inner_batches += static_cast<int>(bp::Dataset<InnerBatch>(8).pipeline().nap().run(inner).batches);
  }
  ACTION(run_inner_then_probe)(bp::RunOptions inner, std::atomic<int>& threads_after) {
    (void)bp::Dataset<InnerBatch>(2).pipeline().nap().run(inner);
    threads_after = at::get_num_threads();
  }
};

}  // namespace

TEST_CASE("a singleton action never runs twice at once, other actions do", "[execution]") {
  Probes probes;
  int runs = 0;
  // A few tries: on a loaded machine the consumer may make every batch itself before a worker
  // wakes up, and the point is that batches can overlap, not how soon a worker wakes.
  for (; runs < 5 && probes.parallel.highest < 2; ++runs)
    numbers(64).pipeline().work(probes, 5).exclusive(probes).run(
        {.batch_size = 2, .prefetch = 4, .threads = 4});
  CHECK(probes.singleton.highest == 1);
  CHECK(probes.parallel.highest >= 2);
  CHECK(probes.finished == 32 * runs);
}

TEST_CASE("singleton actions see the batches one at a time and in order, for any prefetch", "[execution]") {
  for (std::size_t prefetch : {0, 1, 4}) {
    std::vector<std::size_t> order;
    numbers(100).pipeline().jitter().record(order).run(
        {.batch_size = 5, .shuffle = 3, .prefetch = prefetch, .threads = 4});
    std::vector<std::size_t> expected(20);
    std::iota(expected.begin(), expected.end(), 0);
    CHECK(order == expected);
  }
}

TEST_CASE("prefetch N keeps at most N + 1 batches in flight", "[execution]") {
  for (std::size_t prefetch : {0, 1, 3}) {
    CAPTURE(prefetch);
    Probes probes;
    int delivered = 0, most_ahead = 0;
    for (auto& batch : numbers(40).pipeline().work(probes, 2).gen_batch(
             {.batch_size = 2, .prefetch = prefetch, .threads = 4})) {
      most_ahead = std::max(most_ahead, probes.started.load() - delivered);
      ++delivered;
      (void)batch;
    }
    CHECK(delivered == 20);
    CHECK(most_ahead <= static_cast<int>(prefetch) + 1);
    if (prefetch > 0) CHECK(probes.parallel.highest <= static_cast<int>(prefetch) + 1);

    // In memory too: the batch a loop holds is released before the next is asked for.
    Probes held;
    for (auto& batch : numbers(20).pipeline().count_alive(held).gen_batch(
             {.batch_size = 2, .prefetch = prefetch, .threads = 4})) {
      std::this_thread::sleep_for(1ms);  // the workers fill the window meanwhile
      (void)batch;
    }
    CHECK(held.alive.highest <= static_cast<int>(prefetch) + 1);
    CHECK(held.alive.now == 0);
  }
}

TEST_CASE("batches come in index order, or as they finish when asked", "[execution]") {
  auto pipeline = numbers(60).pipeline().jitter();
  std::vector<std::size_t> order;
  for (auto& batch : pipeline.gen_batch({.batch_size = 3, .prefetch = 4, .threads = 4}))
    order.push_back(batch.number());
  std::vector<std::size_t> expected(20);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(order == expected);

  std::multiset<std::size_t> unordered;
  for (auto& batch : pipeline.gen_batch({.batch_size = 3, .prefetch = 4, .ordered = false, .threads = 4})) {
    unordered.insert(batch.number());
  }
  CHECK(unordered == std::multiset<std::size_t>(expected.begin(), expected.end()));
}

TEST_CASE("an exception reaches the caller with the action and the batch", "[execution][errors]") {
  const std::size_t n_batches = 12;
  for (std::size_t prefetch : {0, 4}) {
    for (std::size_t failing : {std::size_t{0}, std::size_t{5}, n_batches - 1}) {
      CAPTURE(prefetch, failing);
      Probes probes;
      auto pipeline = numbers(n_batches * 2).pipeline().work(probes, 1).fail_on(failing).exclusive(probes);
      std::vector<std::size_t> delivered;
      test::finishes_within(30s, [&] {
        try {
          for (auto& batch : pipeline.gen_batch({.batch_size = 2, .prefetch = prefetch, .threads = 4})) {
            delivered.push_back(batch.number());
          }
          FAIL("no exception reached the loop");
        } catch (const bp::ActionError& e) {
          CHECK(e.action() == "fail_on");
          CHECK(e.batch_number() == failing);
          CHECK(std::string(e.what()).find("failed on batch " + std::to_string(failing)) !=
                std::string::npos);
          CHECK_THROWS_AS(std::rethrow_if_nested(e), std::invalid_argument);
        }
      });
      // Every batch before the failing one was delivered, once, in order; none after it.
      std::vector<std::size_t> expected(failing);
      std::iota(expected.begin(), expected.end(), 0);
      CHECK(delivered == expected);
      // The singleton lock was released: the same singleton actions run again.
      test::finishes_within(30s, [&] {
        numbers(8).pipeline().fail_on(1000).exclusive(probes).run({.batch_size = 2, .prefetch = prefetch});
      });
    }
  }
}

TEST_CASE("a LibTorch error reaches the caller as one line, without LibTorch's stack trace",
          "[execution][errors]") {
  try {
    numbers(4).pipeline().mismatch().run({.batch_size = 2});
    FAIL("the shape mismatch did not throw");
  } catch (const bp::ActionError& e) {
    const std::string message = e.what();
    CHECK_THAT(message, test::contains("action 'mismatch' of"));
    CHECK_THAT(message, test::contains("cannot be multiplied"));
    CHECK(message.find('\n') == std::string::npos);
    CHECK(message.find("frame #") == std::string::npos);
    // The original LibTorch error stays nested, whole, for those who want its trace.
    CHECK_THROWS_AS(std::rethrow_if_nested(e), c10::Error);
  }
  // bp::error_message does the same for a LibTorch error caught outside a pipeline.
  try {
    (void)at::ones({2, 3}).matmul(at::ones({2, 3}));
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()) != bp::error_message(e));
    CHECK(bp::error_message(e).find('\n') == std::string::npos);
  }
}

TEST_CASE("an unordered run delivers every batch before a failing one first", "[execution][errors]") {
  for (std::size_t failing : {std::size_t{0}, std::size_t{3}, std::size_t{6}}) {
    CAPTURE(failing);
    std::vector<std::size_t> delivered;
    test::finishes_within(30s, [&] {
      auto stream = numbers(16).pipeline().fail_fast(failing).gen_batch(
          {.batch_size = 2, .prefetch = 3, .ordered = false, .threads = 4});
      CHECK_THROWS_AS(
          [&] {
            while (auto batch = stream.next()) delivered.push_back(batch->number());
          }(),
          bp::ActionError);
    });
    std::set<std::size_t> unique(delivered.begin(), delivered.end());
    CHECK(unique.size() == delivered.size());  // none twice
    for (std::size_t number = 0; number < failing; ++number) CHECK(unique.count(number) == 1);
    CHECK(unique.count(failing) == 0);
  }
}

TEST_CASE("an unordered run delivers the batches behind a failing one that finish first; an ordered one none",
          "[execution][errors]") {
  for (const bool ordered : {true, false}) {
    CAPTURE(ordered);
    std::vector<std::size_t> delivered;
    test::finishes_within(30s, [&] {
      auto stream = numbers(40).pipeline().fail_slowly(2).gen_batch(
          {.batch_size = 2, .prefetch = 4, .ordered = ordered, .threads = 4});
      CHECK_THROWS_AS(
          [&] {
            while (auto batch = stream.next()) delivered.push_back(batch->number());
          }(),
          bp::ActionError);
    });
    const auto behind =
        std::count_if(delivered.begin(), delivered.end(), [](std::size_t n) { return n > 2; });
    if (ordered) {
      CHECK(delivered == std::vector<std::size_t>{0, 1});
    } else {
      CHECK(behind > 0);  // done before the error's turn: delivered, not cancelled
      CHECK(std::count(delivered.begin(), delivered.end(), 2u) == 0);
    }
  }
}

TEST_CASE("the stream is over after an error, and next_batch says so", "[execution][errors]") {
  auto pipeline = numbers(10).pipeline().fail_on(1);
  const bp::RunOptions options{.batch_size = 2, .prefetch = 2};
  CHECK(pipeline.next_batch(options)->number() == 0);
  CHECK_THROWS_AS(pipeline.next_batch(options), bp::ActionError);
  CHECK_FALSE(pipeline.next_batch(options).has_value());
}

TEST_CASE("leaving a loop early stops the work in flight", "[execution]") {
  Probes probes;
  test::finishes_within(30s, [&] {
    for (auto& batch : numbers(1000)
                           .pipeline()
                           .work(probes, 20)
                           .gen_batch({.batch_size = 1, .prefetch = 4, .threads = 4})) {
      if (batch.number() == 2) break;
    }
  });
  const int started = probes.started;
  CHECK(started <= 3 + 5);            // the delivered three, and at most prefetch + 1 more
  CHECK(probes.finished == started);  // everything started has finished: nothing runs on
  std::this_thread::sleep_for(50ms);
  CHECK(probes.started == started);
}

TEST_CASE("one seed gives the same results for any prefetch and thread count", "[execution][random]") {
  auto run = [](std::size_t prefetch, std::size_t threads) {
    std::vector<double> uniforms;
    std::vector<float> tensors;
    for (auto& batch : numbers(40).pipeline().jitter().draw().gen_batch(
             {.batch_size = 4, .n_epochs = 2, .shuffle = 5, .prefetch = prefetch, .threads = threads})) {
      uniforms.push_back(batch.get<double>("uniform"));
      auto t = batch.get("tensor");
      tensors.insert(tensors.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      for (const auto& id : batch.index().ids()) uniforms.push_back(static_cast<double>(id.integer()));
    }
    return std::make_pair(uniforms, tensors);
  };
  const auto reference = run(0, 1);
  CHECK(reference == run(4, 2));
  CHECK(reference == run(4, 4));
  CHECK(reference == run(1, 3));
  auto other_seed = numbers(40).pipeline().draw().next_batch({.batch_size = 4, .seed = 99});
  CHECK(other_seed->get<double>("uniform") != reference.first[0]);
}

TEST_CASE("a run inside an action of another run never hangs", "[execution][nested]") {
  for (std::size_t outer_prefetch : {0, 2}) {
    for (std::size_t outer_threads : {1, 2, 4}) {
      for (std::size_t inner_prefetch : {0, 2}) {
        for (std::size_t inner_threads : {1, 2}) {
          CAPTURE(outer_prefetch, outer_threads, inner_prefetch, inner_threads);
          std::atomic<int> inner_batches{0};
          const bp::RunOptions inner{.batch_size = 1, .prefetch = inner_prefetch, .threads = inner_threads};
          test::finishes_within(60s, [&] {
            bp::Dataset<OuterBatch>(40)
                .pipeline()
                .run_inner(inner, inner_batches)
                .run({.batch_size = 4, .prefetch = outer_prefetch, .threads = outer_threads});
          });
          CHECK(inner_batches == 10 * 8);
        }
      }
    }
  }
}

TEST_CASE("an idle or finished stream limits nothing in the process", "[execution]") {
  const int before = at::get_num_threads();
  auto throttled = numbers(8).pipeline();
  REQUIRE(throttled.next_batch({.batch_size = 2, .prefetch = 1, .threads = 1, .intra_op_threads = 3}));
  CHECK(at::get_num_threads() == before);  // between calls the iteration holds nothing
  // The dataset's next_batch is the pipeline's (once it kept the run's settings between calls).
  auto data = numbers(8);
  REQUIRE(data.next_batch({.batch_size = 2, .prefetch = 1, .threads = 1, .intra_op_threads = 3}));
  CHECK(at::get_num_threads() == before);
  // Forgetting a paused iteration cancels its batches in flight; the ones not started run
  // (cancelled) on the caller as it waits, and once set the caller's count as a worker's.
  Probes slow;
  auto sleepy = numbers(40).pipeline().work(slow, 30);
  REQUIRE(sleepy.next_batch({.batch_size = 2, .prefetch = 8, .threads = 2}));
  CHECK(at::get_num_threads() == before);
  sleepy.reset_iter();
  CHECK(at::get_num_threads() == before);
  data.reset_iter();
  CHECK(at::get_num_threads() == before);
  // OpenBLAS's pool keeps the run's size until the iteration ends: its batches may be in a BLAS
  // call between the calls, and the pool must not be resized under them.
  if (const auto& blas = bp::detail::OpenBlasApi::get(); blas.get_num_threads) {
    const int blas_before = blas.get_num_threads();
    auto kept = numbers(8).pipeline();
    REQUIRE(kept.next_batch({.batch_size = 2, .prefetch = 1, .threads = 1}));
    CHECK(blas.get_num_threads() == 1);
    kept.reset_iter();
    CHECK(blas.get_num_threads() == blas_before);
  }
  auto finished = numbers(2).gen_batch({.batch_size = 2, .threads = 1, .intra_op_threads = 3});
  while (finished.next()) {}
  CHECK(at::get_num_threads() == before);
  // Another run still gets two batches at once (a few tries, as in the first test).
  Probes probes;
  for (int attempt = 0; attempt < 5 && probes.parallel.highest < 2; ++attempt)
    numbers(32).pipeline().work(probes, 10).run({.batch_size = 2, .prefetch = 3, .threads = 2});
  CHECK(probes.parallel.highest >= 2);
}

TEST_CASE("thread settings are restored however overlapping streams end", "[execution]") {
  const int before = at::get_num_threads();
  for (const bool creation_order : {true, false}) {
    CAPTURE(creation_order);
    Probes probes;
    auto pipeline = numbers(8).pipeline().work(probes, 0);
    std::optional<bp::BatchStream<ExecBatch>> first(
        pipeline.gen_batch({.batch_size = 2, .intra_op_threads = 1}));
    REQUIRE(first->next());
    CHECK(probes.intra_op_threads == 1);
    CHECK(at::get_num_threads() == 1);  // the consumer's count, while its stream runs
    std::optional<bp::BatchStream<ExecBatch>> second(
        pipeline.gen_batch({.batch_size = 2, .intra_op_threads = 3}));
    REQUIRE(second->next());
    CHECK(probes.intra_op_threads == 3);
    REQUIRE(first->next());
    CHECK(probes.intra_op_threads == 1);  // each stream's steps get its own count
    if (creation_order) {
      first.reset();
      second.reset();
    } else {
      second.reset();
      CHECK(at::get_num_threads() == 1);  // back to the stream still running
      first.reset();
    }
    CHECK(at::get_num_threads() == before);
  }
}

TEST_CASE("a run inside an action gives its caller back the caller's thread count", "[execution][nested]") {
  const int before = at::get_num_threads();
  std::atomic<int> after_inner{0};
  const bp::RunOptions inner{.batch_size = 2, .prefetch = 0, .intra_op_threads = 3};
  bp::Dataset<OuterBatch>(4)
      .pipeline()
      .run_inner_then_probe(inner, after_inner)
      .run({.batch_size = 2, .prefetch = 0, .intra_op_threads = 2});
  CHECK(after_inner == 2);
  CHECK(at::get_num_threads() == before);
}

TEST_CASE("the pipelines a merge runs side by side share one thread budget", "[execution][merge]") {
  // More oneTBB workers than cores, so that two arenas of the budget each would get theirs.
  const tbb::global_control workers(tbb::global_control::max_allowed_parallelism, 8);
  Probes probes;
  const auto input = [&] { return numbers(40).pipeline().work(probes, 5); };
  const auto stats = bp::merge(input(), input(), input()).run({.batch_size = 2, .prefetch = 3, .threads = 2});
  CHECK(stats.batches == 20);
  CHECK(probes.parallel.highest <= 2);
}

TEST_CASE("the thread budget is shared by batch workers and intra-op threads", "[execution]") {
  const int before = at::get_num_threads();
  // The consumer's whole budget goes to OpenBLAS's pool where OpenBLAS has one of its own
  // (LibTorch's OpenMP team then gets one thread), and to LibTorch's intra-op team otherwise.
  const bool blas_pool = bp::detail::OpenBlasApi::has_own_pool();
  const int consumer_intra_op = blas_pool ? 1 : 2;
  Probes probes;
  // On a loaded machine the consumer may make every batch itself before a worker wakes up: a few
  // tries, until a worker has made one.
  for (int attempt = 0; attempt < 5 && probes.worker_intra_op_threads.empty(); ++attempt) {
    numbers(8)
        .pipeline()
        .work(probes, 10)
        .finish_on_consumer(probes)
        .run({.batch_size = 2, .prefetch = 1, .threads = 2});
  }
  CHECK(probes.worker_intra_op_threads == std::set<int>{1});  // batches made ahead: one thread each
  CHECK(probes.intra_op_threads == consumer_intra_op);        // the consumer's steps: the budget
  if (bp::detail::OpenBlasApi::get().get_num_threads) CHECK(probes.blas_threads == 2);
  numbers(8).pipeline().work(probes, 1).run({.batch_size = 2, .prefetch = 0, .threads = 2});
  CHECK(probes.intra_op_threads == consumer_intra_op);  // the same without prefetch
  numbers(8).pipeline().work(probes, 1).run(
      {.batch_size = 2, .prefetch = 3, .threads = 2, .intra_op_threads = 3});
  CHECK(probes.intra_op_threads == 3);     // asked for explicitly
  CHECK(at::get_num_threads() == before);  // restored after the run
}

TEST_CASE("workers hold back while the consumer's steps take every core, not otherwise", "[execution]") {
  const auto pipeline = [](StepProbe& probe, int ms, bool until_overlap) {
    return bp::Dataset<GatedBatch>(40).pipeline().prepare(probe).prepare(probe).prepare(probe).step(
        probe, ms, until_overlap);
  };
  SECTION("the steps take the whole budget (the default): at most the action under way goes on") {
    StepProbe probe;
    pipeline(probe, 5, false).run({.batch_size = 2, .prefetch = 2, .threads = 2});
    // A worker that passed the gate just before a step began runs that one action; never more.
    CHECK(probe.most_during_a_step <= 1);
  }
  SECTION("inside WorkersMayPrepare they make batches") {
    if (tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism) < 2) return;
    StepProbe probe;
    // One intra-op thread on the consumer with a budget of 2 leaves a core free for the update,
    // whatever the BLAS; the workers still hold back during the steps, as asked.
    const bp::RunOptions options{
        .batch_size = 2, .prefetch = 2, .threads = 2, .intra_op_threads = 1, .prepare_during_steps = false};
    bp::Dataset<GatedBatch>(40)
        .pipeline()
        .prepare(probe)
        .prepare(probe)
        .prepare(probe)
        .step_with_an_update(probe, 500)
        .run(options);
    CHECK(probe.most_during_a_step >= 2);
  }
  SECTION("asked to, the workers make batches beside the steps") {
    // Needs a oneTBB worker beside the consumer.
    if (tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism) < 2) return;
    StepProbe probe;
    pipeline(probe, 500, true)
        .run({.batch_size = 2, .prefetch = 2, .threads = 2, .prepare_during_steps = true});
    CHECK(probe.steps_with_overlap >= 1);
  }
}

TEST_CASE("while a step lets the workers prepare, actions that use a model still wait", "[execution]") {
  bp::detail::TaskGate gate;
  const auto worker_action = [&gate](bool uses_model) {
    return std::async(std::launch::async, [&gate, uses_model] { gate.before_action(true, uses_model); });
  };
  // Futures declared before the steps that hold them: a future's destructor waits for its action.
  std::future<void> first, with_model, not_freed;
  {
    const bp::detail::TaskGate::StepsRunning steps(gate, true, true);
    REQUIRE(bp::detail::steps_preparation_switch == &gate);
    first = worker_action(false);
    CHECK(first.wait_for(50ms) == std::future_status::timeout);  // the steps hold the cores
    {
      const bp::WorkersMayPrepare update;
      // REQUIRE: `first` is reassigned below, which would wait for a task still held.
      REQUIRE(first.wait_for(5s) == std::future_status::ready);  // an action without a model goes on
      with_model = worker_action(true);
      CHECK(with_model.wait_for(50ms) == std::future_status::timeout);  // one with a model waits
    }
    first = worker_action(false);
    CHECK(first.wait_for(50ms) == std::future_status::timeout);  // the update over: all wait again
    gate.before_action(false, true);                             // the consumer never waits
  }
  CHECK(bp::detail::steps_preparation_switch == nullptr);
  CHECK(with_model.wait_for(5s) == std::future_status::ready);  // the steps over: everything goes on
  CHECK(first.wait_for(5s) == std::future_status::ready);
  {
    // Where the consumer's kernels take every core, a step frees nothing.
    const bp::detail::TaskGate::StepsRunning steps(gate, true, false);
    CHECK(bp::detail::steps_preparation_switch == nullptr);
    const bp::WorkersMayPrepare update;
    not_freed = worker_action(false);
    CHECK(not_freed.wait_for(50ms) == std::future_status::timeout);
  }
  CHECK(not_freed.wait_for(5s) == std::future_status::ready);
}

TEST_CASE("a note tells when OpenBLAS runs generic kernels on a CPU that has better ones", "[execution]") {
  using bp::detail::generic_blas_kernels_note;
  const auto avx512 = generic_blas_kernels_note("Prescott", true, true, false);
  REQUIRE(avx512);
  CHECK_THAT(*avx512, test::contains("OPENBLAS_CORETYPE=SkylakeX"));
  const auto avx2 = generic_blas_kernels_note("Prescott", true, false, false);
  REQUIRE(avx2);
  CHECK_THAT(*avx2, test::contains("OPENBLAS_CORETYPE=Haswell"));
  CHECK_FALSE(generic_blas_kernels_note("Prescott", false, false, false));  // an old CPU: right kernels
  CHECK_FALSE(generic_blas_kernels_note("SkylakeX", true, true, false));    // recognised
  CHECK_FALSE(generic_blas_kernels_note("Prescott", true, true, true));     // the user chose
}

TEST_CASE("memory freed between batches stays in the process", "[execution][memory]") {
  using bp::detail::environment_sets_malloc_thresholds;
  SECTION("thresholds set in the environment are the application's") {
    CHECK_FALSE(environment_sets_malloc_thresholds(nullptr, nullptr, nullptr));
    CHECK_FALSE(environment_sets_malloc_thresholds("glibc.malloc.arena_max=2", nullptr, nullptr));
    CHECK(environment_sets_malloc_thresholds("glibc.malloc.trim_threshold=1000000", nullptr, nullptr));
    CHECK(environment_sets_malloc_thresholds("glibc.pthread.x=1:glibc.malloc.mmap_threshold=9", nullptr,
                                             nullptr));
    CHECK(environment_sets_malloc_thresholds(nullptr, "1000000", nullptr));
    CHECK(environment_sets_malloc_thresholds(nullptr, nullptr, "1000000"));
  }
  SECTION("a run settles them, and a block freed and asked for again keeps its pages") {
    (void)numbers(4).pipeline().run({.batch_size = 2});
    CHECK(bp::detail::freed_memory_settled());
#if defined(__GLIBC__) && !BATCHPIPE_TEST_SANITIZED
    // glibc's own malloc (a sanitizer brings its own). Three 8 MiB tensors made and freed at
    // every round, as a training step does at every batch: with glibc's defaults the freed top
    // of the heap passes the trim threshold, goes back to the system and faults in again at the
    // next round (6,000 faults a round); kept, they are reused.
    const auto minor_faults = [] {
      rusage usage{};
      getrusage(RUSAGE_SELF, &usage);
      return usage.ru_minflt;
    };
    const auto round = [] {
      std::vector<at::Tensor> blocks;
      for (int i = 0; i < 3; ++i) blocks.push_back(torch::ones({2 << 20}));
      for (const auto& block : blocks) CHECK(block.sum().item<float>() == static_cast<float>(2 << 20));
    };
    // glibc's aligned allocations (LibTorch's) fragment the heap for the first rounds, which
    // grow it; then the rounds reuse it.
    for (int i = 0; i < 12; ++i) round();
    const long before = minor_faults();
    for (int i = 0; i < 10; ++i) round();
    CHECK(minor_faults() - before < 2048);
#endif
  }
}
