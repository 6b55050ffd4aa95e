#pragma once
// Where a batch is created (make_batch) and where its actions are dispatched (run_steps): what
// every source of a run calls on each batch, on the arena's workers or on the consumer.

#include <batchpipe/core/dataset.hpp>
#include <batchpipe/core/detail/action_binding.hpp>
#include <batchpipe/core/detail/batch_sampler.hpp>
#include <batchpipe/core/detail/batch_sources.hpp>
#include <batchpipe/core/detail/prefetcher.hpp>
#include <batchpipe/core/detail/run_context.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/profile.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// What every batch of one run goes through, shared by the run's tasks.
template <class B>
struct RunSteps {
  std::vector<StepPtr<B>> steps;
  std::vector<double> probability;  // per step, decided when the run starts
  std::uint64_t seed = 0;           // of the draws of which batches a step applies to
  std::uint64_t stream_seed = 0;    // of the batches' random streams (salted per shard)
  std::size_t parallel_steps = 0;   // steps [0, parallel_steps) run on the arena
  ProfilerPtr profiler;             // null unless RunOptions::profile
};

/// Whether the batch goes through step i, which has probability p. The draw comes from a stream
/// of its own, so it does not change what the actions draw.
inline bool step_applies(double p, std::uint64_t batch_seed, std::size_t i) {
  return p >= 1.0 || Random(derive_seed(batch_seed, stream_salt::step_probability + i)).bernoulli(p);
}

/// Runs `work` of `step` on the batch; any exception becomes an ActionError naming the step's
/// action and the batch, with the original nested.
template <class B, class Work>
void apply_step(B& batch, const Step<B>& step, Work&& work) {
  try {
    work();
  } catch (...) {
    std::throw_with_nested(ActionError(type_name<B>(), step.action->info.name, batch.number(), batch.epoch(),
                                       current_exception_message()));
  }
}

/// Passes the batch through steps [first, last), up to an action that skips it. Any exception
/// becomes an ActionError naming the step's action and the batch, with the original nested.
/// The batch leaves with no deferred component (detail/deferred_tensor.hpp).
/// This is where an action is dispatched on a batch.
/// `seed` replaces the run's for a joined batch (whose draws follow the batch it joins).
template <class B>
void run_steps(B& batch, const RunSteps<B>& run, std::size_t first, std::size_t last,
               const BeforeAction* before_action, std::optional<std::uint64_t> seed = {}) {
  const std::uint64_t batch_seed = derive_seed(seed.value_or(run.seed), batch.number());
  const bool on_worker = before_action && before_action->on_worker();
  const Step<B>* last_applied = nullptr;
  for (std::size_t i = first; i < last && !batch.skipped(); ++i) {
    const Step<B>& step = *run.steps[i];
    if (before_action) (*before_action)(step.uses_model());
    if (!step_applies(run.probability[i], batch_seed, i)) continue;
    const auto started = run.profiler ? Profiler::clock::now() : Profiler::clock::time_point{};
    // What the range's last action left deferred is made before the batch leaves, timed as its.
    apply_step(batch, step, [&] {
      step.apply(batch);
      if (i + 1 == last && !batch.skipped()) access::settle_components(batch);
    });
    if (run.profiler) run.profiler->record(i + 1, started, on_worker);
    last_applied = &step;
  }
  // The range's last steps did not apply: what an action before them left deferred, made now.
  if (last_applied && !batch.skipped())
    apply_step(batch, *last_applied, [&] { access::settle_components(batch); });
}

/// Makes batch `plan.number` and passes it through the parallel steps. This is where a batch is
/// created.
template <class B>
B make_batch(const Dataset<B>& dataset, const RunSteps<B>& run, const RunContextPtr& context,
             const BatchPlan& plan, const BeforeAction& before_action) {
  before_action(false);
  const auto started = run.profiler ? Profiler::clock::now() : Profiler::clock::time_point{};
  std::optional<B> made;
  try {
    made.emplace(dataset.create_batch(plan.positions));
  } catch (...) {
    std::throw_with_nested(
        ActionError(type_name<B>(), "<create batch>", plan.number, plan.epoch, current_exception_message()));
  }
  if (run.profiler) run.profiler->record(0, started, before_action.on_worker());
  B& batch = *made;
  number_batch(batch, plan.number, plan.epoch, run.stream_seed, context);
  run_steps(batch, run, 0, run.parallel_steps, &before_action);
  return std::move(batch);
}

}  // namespace batchpipe::detail
