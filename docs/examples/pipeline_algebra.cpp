// docs/pipeline-algebra.md: skip, repeat, per-run probability, rebatch, merge, join, before/after.
#include <batchpipe/batchpipe.hpp>

#include <iostream>
#include <string>
#include <vector>

struct Rows : bp::Batch<Rows> {
  ACTION(load)() {  // "x": the items' ids as values
    std::vector<float> values;
    for (const auto& id : index().ids()) values.push_back(static_cast<float>(id.integer()));
    set("x", at::tensor(values));
  }
  ACTION(drop_odd_batches)() {
    if (number() % 2 == 1) skip();
  }
  ACTION(add)(float amount) { (*this)["x"] = get("x") + amount; }
  ACTION(square)() { set("squares", get("x") * get("x")); }
  ACTION(describe, .singleton = true)() {
    std::cout << "  batch " << number() << " (epoch " << epoch() << "): " << size() << " items\n";
  }
};

struct Labels : bp::Batch<Labels> {};

int main() {
  const bp::Dataset<Rows> dataset(10);

  std::cout << "skip: odd batches dropped\n";
  const auto stats = dataset.pipeline().drop_odd_batches().describe().run({.batch_size = 3});
  std::cout << "  delivered " << stats.batches << ", skipped " << stats.skipped << '\n';

  // Repetition: add(1) three times; with_probability: the last action on half the batches.
  const auto repeated = dataset.pipeline().load() + dataset.pipeline().add(1.0f) * 3;
  const auto x = repeated.gen_batch({.batch_size = 10}).next()->get("x");
  std::cout << "repeat: x[0] = " << x[0].item<float>() << '\n';
  const auto sometimes = dataset.pipeline().load().add(100.0f).with_probability(bp::C("p"));
  std::size_t shifted = 0;
  for (auto& batch :
       sometimes.with_config(bp::Config::parse(R"({"p": 0.5})")).gen_batch({.batch_size = 1, .seed = 3})) {
    shifted += batch.get("x")[0].item<float>() >= 100;
  }
  std::cout << "with_probability(C(\"p\")): " << shifted << " of 10 batches shifted\n";

  std::cout << "rebatch: batches of 3 re-cut into batches of 4, each epoch's remainder last\n";
  dataset.pipeline().load().rebatch(4).describe().run({.batch_size = 3, .n_epochs = 2});

  // Merge: two pipelines over the same items, side by side; join: a component of another
  // dataset's batch for the same ids.
  const auto merged = bp::merge(dataset.pipeline().load(), dataset.pipeline().load().square());
  const auto merged_batch = merged.gen_batch({.batch_size = 4, .shuffle = 1}).next();
  std::cout << "merge: components";
  for (const auto& name : merged_batch->components()) std::cout << ' ' << name;
  std::cout << '\n';
  const bp::Dataset<Labels> labels(bp::Index(std::vector<std::int64_t>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}),
                                   {{"label", at::arange(10) * 10}});  // id 9 -> 0, id 0 -> 90
  auto joined = dataset.pipeline().load().join(labels, {"label"}).gen_batch({.batch_size = 2}).next();
  std::cout << "join: item 0 (id 0) has label " << joined->get("label")[0].item<std::int64_t>() << '\n';

  // Before and after a run: set-up, and a step that runs whatever happened.
  const auto around = dataset.pipeline()
                          .load()
                          .before([] { std::cout << "before: set-up\n"; })
                          .after([](const bp::RunReport& report) {
                            std::cout << "after: " << report.stats.batches << " batches, "
                                      << (report.failed() ? "failed" : "succeeded") << '\n';
                          });
  (void)around.run({.batch_size = 5});

  const bool ok = stats.skipped == 2 && x[0].item<float>() == 3.0f && shifted > 0 && shifted < 10 &&
                  merged_batch->has("squares") && joined->get("label")[0].item<std::int64_t>() == 90;
  return ok ? 0 : 1;
}
