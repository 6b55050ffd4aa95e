// docs/profiling.md: where a run's time goes, action by action.
#include <batchpipe/batchpipe.hpp>

#include <chrono>
#include <iostream>
#include <thread>

struct Work : bp::Batch<Work> {
  ACTION(prepare)() { std::this_thread::sleep_for(std::chrono::milliseconds(3)); }
  ACTION(step, .singleton = true)() { std::this_thread::sleep_for(std::chrono::milliseconds(1)); }
};

int main() {
  const auto pipeline = bp::Dataset<Work>(400).pipeline().prepare().step();
  const auto stats = pipeline.run({.batch_size = 10, .prefetch = 2, .profile = true});
  const bp::Profile& profile = *stats.profile;
  std::cout << profile.table();
  for (const auto& row : profile.actions) {
    std::cout << row.action << ": " << row.seconds_per_batch() * 1000 << " ms per batch\n";
  }
  // The consumer's steps, the batches it made and its waits account for the run's time.
  std::cout << "consumer " << profile.consumer_seconds() << " s of the run's " << profile.run_seconds
            << " s\n";
  return profile.actions.size() == 3 && profile.actions[1].batches == 40 ? 0 : 1;
}
