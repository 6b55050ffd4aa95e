// W0 micro figures with Google Benchmark: what batchpipe itself costs, with actions that do
// nothing. Each iteration takes one batch of 256 items from an endless run.
//   BM_trip/N/P:     one batch through N no-op actions at prefetch P (N = 0: the batch alone).
//   BM_dispatch/P:   one no-op action dispatched (per_action), from batches through 1000 of them.
//
//   ./benchmark_overhead --benchmark_format=json

#include <batchpipe/batchpipe.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>

namespace {

struct NoopBatch : bp::Batch<NoopBatch> {
  ACTION(nothing)() {}
};

bp::Pipeline<NoopBatch> noop_pipeline(std::size_t actions) {
  auto pipeline = bp::Dataset<NoopBatch>(1'000'000).pipeline();
  for (std::size_t i = 0; i < actions; ++i) pipeline = pipeline.nothing();
  return pipeline;
}

bp::BatchStream<NoopBatch> endless(const bp::Pipeline<NoopBatch>& pipeline, std::size_t prefetch) {
  return pipeline.gen_batch({.batch_size = 256, .n_epochs = bp::endless, .shuffle = 1, .prefetch = prefetch});
}

void BM_trip(benchmark::State& state) {
  const auto actions = static_cast<std::size_t>(state.range(0));
  const auto prefetch = static_cast<std::size_t>(state.range(1));
  auto stream = endless(noop_pipeline(actions), prefetch);
  for (auto _ : state) benchmark::DoNotOptimize(stream.next());
  state.SetItemsProcessed(state.iterations() * 256);
}
BENCHMARK(BM_trip)->ArgsProduct({{0, 10, 100}, {0, 2}})->ArgNames({"actions", "prefetch"});

// The cost of one dispatch: batches through 1000 no-op actions, so that making the batch is
// under a hundredth of the time; the counter is seconds per action, an upper bound.
void BM_dispatch(benchmark::State& state) {
  constexpr std::size_t actions = 1000;
  auto stream = endless(noop_pipeline(actions), static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(stream.next());
  state.counters["per_action"] =
      benchmark::Counter(static_cast<double>(state.iterations() * actions),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_dispatch)->Arg(0)->Arg(2)->ArgName("prefetch");

}  // namespace

BENCHMARK_MAIN();
