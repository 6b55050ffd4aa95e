// Data-parallel training over c10d/Gloo, run as several processes by scripts/launch-local.sh:
// every rank runs these cases in the same order, so their collectives meet. CTest starts them
// with 2 and 3 ranks on loopback (tests/CMakeLists.txt), and the [dies] case apart.
#include "../support.hpp"

#include <batchpipe/distributed.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

struct ShardBatch : bp::Batch<ShardBatch> {
  ACTION(record, .singleton = true)
  (std::vector<std::vector<std::int64_t>>& epochs, std::vector<std::size_t>& sizes) {
    if (epochs.size() <= epoch()) epochs.resize(epoch() + 1);
    for (const auto& id : index().ids()) epochs[epoch()].push_back(id.integer());
    sizes.push_back(size());
  }
};

/// This process's place in the job the launcher describes (one per process, for every case).
const bp::Distributed& job() {
  static const bp::Distributed joined = bp::Distributed::from_environment();
  return joined;
}

/// A second job of the same processes whose buckets hold 64 bytes: every layer's gradients in
/// several allreduces, sent in order, some while the backward pass goes on.
const bp::Distributed& tiny_job() {
  static const bp::Distributed joined = [] {
    bp::DistributedOptions tiny = job().options();
    tiny.master_port = static_cast<std::uint16_t>(tiny.master_port + 20);
    tiny.bucket_bytes = 64;
    return bp::Distributed(tiny);
  }();
  return joined;
}

/// What calling f threw: its message, and whether it was a bp::Error ("" and false: nothing).
struct Thrown {
  bool error = false;
  std::string message;
};
template <class F>
Thrown thrown_by(F&& f) {
  try {
    f();
  } catch (const bp::Error& e) {
    return {true, e.what()};
  } catch (const std::exception& e) {
    return {false, e.what()};
  }
  return {};
}

torch::nn::Sequential small_model() {
  return torch::nn::Sequential(torch::nn::Linear(6, 5), torch::nn::Tanh(), torch::nn::Linear(5, 3));
}

/// The module's parameters, flattened into one tensor.
at::Tensor flat_parameters(const torch::nn::Sequential& model) {
  std::vector<at::Tensor> flat;
  for (const auto& p : model->parameters()) flat.push_back(p.detach().reshape({-1}));
  return torch::cat(flat);
}

/// Whether every rank holds exactly rank 0's parameters.
bool same_on_every_rank(const torch::nn::Sequential& model) {
  auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(model->clone());
  torch::nn::Sequential rank0(copy);
  job().broadcast_parameters(rank0);
  const bool same = torch::equal(flat_parameters(rank0), flat_parameters(model));
  return job().sum(same ? 0.0 : 1.0) == 0.0;
}

}  // namespace

TEST_CASE("the launcher's job has the expected shape", "[distributed]") {
  REQUIRE(job().world_size() >= 2);
  CHECK(job().rank() < job().world_size());
  CHECK(job().shard().count == job().world_size());
  CHECK(job().sum(1.0) == test::Approx(static_cast<double>(job().world_size())));
  CHECK(job().sum(static_cast<double>(job().rank())) ==
        test::Approx(static_cast<double>(job().world_size() * (job().world_size() - 1) / 2)));
}

TEST_CASE("shards are disjoint, cover the index each epoch and have equal batch counts", "[distributed]") {
  const std::size_t ranks = job().world_size();
  // Sizes that divide evenly, leave a short last step, and leave fewer items than ranks.
  for (const std::size_t n_items : {std::size_t{24}, std::size_t{29}, 4 * ranks + 1}) {
    for (const bool drop_last : {false, true}) {
      const std::size_t epochs = 3;
      std::vector<std::vector<std::int64_t>> seen;
      std::vector<std::size_t> sizes;
      bp::Dataset<ShardBatch>(n_items)
          .pipeline()
          .record(std::ref(seen), std::ref(sizes))
          .run({.batch_size = 2,
                .n_epochs = epochs,
                .shuffle = 11,
                .drop_last = drop_last,
                .prefetch = 2,
                .shard = job().shard()});
      INFO("items " << n_items << ", drop_last " << drop_last << ", rank " << job().rank());
      // Every rank made as many batches: their sum is ranks times this rank's count.
      CHECK(job().sum(static_cast<double>(sizes.size())) ==
            test::Approx(static_cast<double>(ranks * sizes.size())));
      seen.resize(epochs);
      for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
        std::vector<double> counts(n_items, 0.0);
        for (const auto id : seen[epoch]) counts[static_cast<std::size_t>(id)] += 1.0;
        counts = job().sum(counts);
        const std::size_t step = 2 * ranks;
        const std::size_t covered = drop_last ? n_items / step * step : n_items;
        double total = 0;
        for (const double count : counts) {
          CHECK(count <= 1.0);  // disjoint: nobody sees an item another rank sees
          total += count;
        }
        CHECK(total == test::Approx(static_cast<double>(covered)));  // together: every item (not dropped)
      }
      // Each epoch has its own order (the shards of an epoch share one: disjoint and complete above).
      if (!drop_last && n_items == 24) CHECK(job().sum(seen[0] == seen[1] ? 1.0 : 0.0) == 0.0);
    }
  }
}

TEST_CASE("after one synchronized step every rank holds identical parameters", "[distributed]") {
  torch::manual_seed(static_cast<std::uint64_t>(100 + job().rank()));  // each rank starts elsewhere
  auto model = small_model();
  CHECK_FALSE(same_on_every_rank(model));
  job().broadcast_parameters(model);
  CHECK(same_on_every_rank(model));
  torch::optim::Adam optimizer(model->parameters(), 0.05);
  // Each rank's own data, of its own size.
  const auto items = static_cast<std::int64_t>(4 + job().rank());
  const auto inputs = torch::randn({items, 6});
  const auto targets = torch::randint(0, 3, {items}, torch::kLong);
  const at::Tensor before = flat_parameters(model).clone();
  const double loss = bp::train_step(job(), model, optimizer, inputs, targets);
  CHECK(std::isfinite(loss));
  CHECK_FALSE(torch::equal(before, flat_parameters(model)));
  CHECK(same_on_every_rank(model));
}

TEST_CASE("ranks with parts of a batch train like one process with the whole batch", "[distributed]") {
  const std::size_t ranks = job().world_size();
  torch::manual_seed(7);          // the same data and start on every rank
  const std::int64_t batch = 11;  // 6 + 5 for two ranks, 4 + 4 + 3 for three: weights matter
  std::vector<at::Tensor> inputs, targets;
  for (int step = 0; step < 3; ++step) {
    inputs.push_back(torch::randn({batch, 6}));
    targets.push_back(torch::randint(0, 3, {batch}, torch::kLong));
  }
  auto whole = small_model();
  auto parted = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(whole->clone());
  torch::nn::Sequential part_model(parted);
  torch::nn::Sequential manual_model(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(whole->clone()));
  torch::optim::SGD whole_optimizer(whole->parameters(), 0.1);
  torch::optim::SGD part_optimizer(part_model->parameters(), 0.1);
  torch::optim::SGD manual_optimizer(manual_model->parameters(), 0.1);
  // Buckets of 64 bytes: every layer's gradients in several allreduces, sent in order.
  const bp::Distributed& tiny_buckets = tiny_job();
  torch::nn::Sequential tiny_model(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(whole->clone()));
  torch::optim::SGD tiny_optimizer(tiny_model->parameters(), 0.1);
  // This rank's rows: near-equal parts, as a shard's last step is cut.
  const std::int64_t even = batch / static_cast<std::int64_t>(ranks),
                     extra = batch % static_cast<std::int64_t>(ranks);
  const auto rank = static_cast<std::int64_t>(job().rank());
  const std::int64_t first = rank * even + std::min(rank, extra), count = even + (rank < extra ? 1 : 0);
  for (std::size_t step = 0; step < inputs.size(); ++step) {
    bp::train_step(whole, whole_optimizer, inputs[step], targets[step]);
    const auto mine = inputs[step].narrow(0, first, count);
    const auto my_targets = targets[step].narrow(0, first, count);
    // Averaged during the backward pass (train_step), and after it (a step of one's own).
    bp::train_step(job(), part_model, part_optimizer, mine, my_targets);
    bp::train_step(tiny_buckets, tiny_model, tiny_optimizer, mine, my_targets);
    manual_optimizer.zero_grad();
    torch::nn::functional::cross_entropy(manual_model->forward(mine), my_targets).backward();
    job().average_gradients(manual_model, static_cast<std::size_t>(count));
    manual_optimizer.step();
  }
  CHECK(torch::allclose(flat_parameters(whole), flat_parameters(part_model), 1e-5, 1e-6));
  CHECK(torch::allclose(flat_parameters(whole), flat_parameters(manual_model), 1e-5, 1e-6));
  CHECK(torch::allclose(flat_parameters(whole), flat_parameters(tiny_model), 1e-5, 1e-6));
}

TEST_CASE("a rank with an empty batch joins the average with weight zero", "[distributed]") {
  torch::manual_seed(3);
  auto model = small_model();
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  auto reference = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(model->clone());
  torch::nn::Sequential alone(reference);
  torch::optim::SGD alone_optimizer(alone->parameters(), 0.1);
  const auto inputs = torch::randn({6, 6});
  const auto targets = torch::randint(0, 3, {6}, torch::kLong);
  // Only rank 0 has items: everyone must end where rank 0 alone would.
  const std::int64_t mine = job().is_main() ? 6 : 0;
  const double loss =
      bp::train_step(job(), model, optimizer, inputs.narrow(0, 0, mine), targets.narrow(0, 0, mine));
  CHECK(std::isnan(loss) != job().is_main());
  bp::train_step(alone, alone_optimizer, inputs, targets);
  CHECK(torch::allclose(flat_parameters(alone), flat_parameters(model), 1e-5, 1e-6));
  // An undefined batch (what an empty batch of files may hold) is an empty one too.
  const auto before = flat_parameters(model).clone();
  bp::train_step(job(), model, optimizer, job().is_main() ? inputs : at::Tensor(),
                 job().is_main() ? targets : at::Tensor());
  CHECK(same_on_every_rank(model));
  CHECK_FALSE(torch::equal(before, flat_parameters(model)));
  // Nothing to train (every parameter frozen): the step averages nothing and changes nothing.
  torch::nn::Linear frozen(3, 2);
  for (auto& p : frozen->parameters()) p.set_requires_grad(false);
  job().average_gradients(frozen, 4);
  job().barrier();
}

TEST_CASE("a sparse gradient is an Error on every rank, and the job goes on", "[distributed]") {
  const std::size_t ranks = job().world_size();
  for (const bp::Distributed* on : {&job(), &tiny_job()}) {
    INFO("bucket bytes " << on->options().bucket_bytes << ", rank " << on->rank());
    torch::manual_seed(5);  // the same model on every rank
    torch::nn::Sequential model(torch::nn::Embedding(torch::nn::EmbeddingOptions(10, 4).sparse(true)),
                                torch::nn::Linear(4, 3));
    torch::optim::SGD optimizer(model->parameters(), 0.1);
    // The last rank's batch is empty: it has no gradient, sparse or not, and learns of the
    // failure from the others only.
    const bool empty = on->rank() + 1 == ranks;
    const std::int64_t items = empty ? 0 : 5;
    const auto inputs = torch::randint(0, 10, {items}, torch::kLong);
    const auto targets = torch::randint(0, 3, {items}, torch::kLong);
    const auto before = flat_parameters(model).clone();
    Thrown during, after;
    test::finishes_within(std::chrono::seconds(60), [&] {
      during = thrown_by([&] { bp::train_step(*on, model, optimizer, inputs, targets); });
      // The same after the backward pass.
      optimizer.zero_grad();
      if (!empty) torch::nn::functional::cross_entropy(model->forward(inputs), targets).backward();
      after = thrown_by([&] { on->average_gradients(model, static_cast<std::size_t>(items)); });
    });
    for (const Thrown& thrown : {during, after}) {
      CHECK(thrown.error);
      CHECK_THAT(thrown.message,
                 empty ? test::contains("failed on rank") : test::contains("sparse gradient"));
    }
    CHECK(torch::equal(before, flat_parameters(model)));  // no step taken
    // The job goes on: collectives meet, a dense model trains.
    CHECK(on->sum(1.0) == test::Approx(static_cast<double>(ranks)));
    auto dense = small_model();
    on->broadcast_parameters(dense);
    torch::optim::SGD dense_optimizer(dense->parameters(), 0.1);
    bp::train_step(*on, dense, dense_optimizer, torch::randn({3, 6}),
                   torch::randint(0, 3, {3}, torch::kLong));
    CHECK(same_on_every_rank(dense));
  }
}

TEST_CASE("a step that fails on one rank fails on every rank, and the next step is exact", "[distributed]") {
  const std::size_t ranks = job().world_size();
  const bool failing = job().rank() + 1 == ranks;
  for (const bp::Distributed* on : {&job(), &tiny_job()}) {
    INFO("bucket bytes " << on->options().bucket_bytes << ", rank " << on->rank());
    // A trap between the layers throws in the backward pass of the last rank when set: after the
    // last layer's gradients went out (with tiny buckets), before the first layer's.
    auto armed = std::make_shared<bool>(false);
    const auto trapped = [failing](std::shared_ptr<bool> trap) {
      return torch::nn::Sequential(torch::nn::Linear(6, 5),
                                   torch::nn::Functional([failing, trap](at::Tensor x) {
                                     if (failing && *trap && x.requires_grad()) {
                                       x.register_hook([](const at::Tensor&) -> at::Tensor {
                                         throw std::runtime_error("trap sprung in the backward pass");
                                       });
                                     }
                                     return x;
                                   }),
                                   torch::nn::Tanh(), torch::nn::Linear(5, 3));
    };
    torch::manual_seed(9);
    auto model = trapped(armed);
    auto reference = trapped(std::make_shared<bool>(false));
    {
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < model->parameters().size(); ++i)
        reference->parameters()[i].copy_(model->parameters()[i]);
    }
    torch::optim::SGD optimizer(model->parameters(), 0.1);
    torch::optim::SGD reference_optimizer(reference->parameters(), 0.1);
    const std::int64_t batch = 11;
    const auto inputs = torch::randn({batch, 6});
    const auto targets = torch::randint(0, 3, {batch}, torch::kLong);
    const std::int64_t even = batch / static_cast<std::int64_t>(ranks),
                       extra = batch % static_cast<std::int64_t>(ranks);
    const auto rank = static_cast<std::int64_t>(on->rank());
    const std::int64_t first = rank * even + std::min(rank, extra), count = even + (rank < extra ? 1 : 0);
    const auto mine = inputs.narrow(0, first, count);
    const auto my_targets = targets.narrow(0, first, count);
    const auto before = flat_parameters(model).clone();
    const std::string last = "failed on rank " + std::to_string(ranks - 1);

    // 1. The backward pass throws on the last rank half way, with large inputs (large
    // gradients, that a stale slot of the buckets would carry into the next step).
    *armed = true;
    Thrown thrown;
    test::finishes_within(std::chrono::seconds(60), [&] {
      thrown = thrown_by([&] { bp::train_step(*on, model, optimizer, mine * 100, my_targets); });
    });
    *armed = false;
    if (failing) {
      CHECK_THAT(thrown.message, test::contains("trap sprung"));  // its own exception
    } else {
      CHECK(thrown.error);
      CHECK_THAT(thrown.message, test::contains(last) && test::contains("during its backward pass"));
    }
    CHECK(torch::equal(before, flat_parameters(model)));

    // 2. The forward pass (the loss) throws on the last rank: a target out of range.
    const auto bad_targets = failing ? torch::full_like(my_targets, 7) : my_targets;
    test::finishes_within(std::chrono::seconds(60), [&] {
      thrown = thrown_by([&] { bp::train_step(*on, model, optimizer, mine, bad_targets); });
    });
    if (!failing) {
      CHECK(thrown.error);
      CHECK_THAT(thrown.message, test::contains(last) && test::contains("before its backward pass"));
    } else {
      CHECK_FALSE(thrown.message.empty());
    }
    CHECK(torch::equal(before, flat_parameters(model)));

    // 3. The next steps average exactly the whole batch's gradient: the buckets reused after the
    // failures hold nothing of them, and nothing still writes into them.
    for (int step = 0; step < 2; ++step) {
      bp::train_step(*on, model, optimizer, mine, my_targets);
      bp::train_step(reference, reference_optimizer, inputs, targets);
    }
    CHECK(torch::allclose(flat_parameters(reference), flat_parameters(model), 1e-5, 1e-6));
  }
}

TEST_CASE("ranks whose models differ get an Error each, not a crash", "[distributed]") {
  const std::size_t ranks = job().world_size();
  const bool odd = job().rank() == 1;
  // Rank 1's last layer is wider: its tensors, and its buckets, have other sizes.
  torch::nn::Sequential model =
      odd ? torch::nn::Sequential(torch::nn::Linear(6, 5), torch::nn::Tanh(), torch::nn::Linear(5, 4))
          : small_model();
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  const auto before = flat_parameters(model).clone();
  Thrown broadcast, step;
  test::finishes_within(std::chrono::seconds(60), [&] {
    broadcast = thrown_by([&] { job().broadcast_parameters(model); });
    step = thrown_by([&] {
      bp::train_step(job(), model, optimizer, torch::randn({4, 6}), torch::randint(0, 3, {4}, torch::kLong));
    });
  });
  CHECK(broadcast.error);
  CHECK_THAT(broadcast.message, test::contains("modules of rank 1 are not rank 0's"));
  CHECK(step.error);
  CHECK_THAT(step.message, test::contains("different models") && test::contains("rank 1"));
  CHECK(torch::equal(before, flat_parameters(model)));
  CHECK(job().sum(1.0) == test::Approx(static_cast<double>(ranks)));  // the job goes on
}

TEST_CASE("a failure too late to tell the other ranks breaks the job, clearly", "[distributed]") {
  const std::size_t ranks = job().world_size();
  const bool failing = job().rank() + 1 == ranks;
  bp::DistributedOptions options = job().options();
  options.master_port = static_cast<std::uint16_t>(options.master_port + 30);
  const bp::Distributed own(options);  // a job of this case's own: it ends broken on one rank
  torch::manual_seed(4);
  auto model = small_model();
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  const auto leaf = torch::randn({4, 6}).requires_grad_();
  const auto targets = torch::randint(0, 3, {4}, torch::kLong);
  Thrown thrown;
  test::finishes_within(std::chrono::seconds(60), [&] {
    // The inputs' gradient comes after every parameter's (autograd runs the nodes made last
    // first; their numbers count per thread, so the inputs are made on the forward pass's
    // thread): a hook on it throws on the last rank once all its buckets went out, flags down.
    // The others' step goes on without it.
    const at::Tensor inputs = leaf * 1.0;
    if (failing) {
      inputs.register_hook(
          [](const at::Tensor&) -> at::Tensor { throw std::runtime_error("late trap sprung"); });
    }
    thrown = thrown_by([&] { bp::train_step(own, model, optimizer, inputs, targets); });
  });
  if (failing) {
    CHECK(thrown.error);
    CHECK_THAT(thrown.message, test::contains("late trap sprung") && test::contains("the job is broken"));
    if (thrown.message.find("the job is broken") != std::string::npos) {  // else the others are not waiting
      const Thrown next = thrown_by([&] { own.barrier(); });  // fails at once, without a collective
      CHECK(next.error);
      CHECK_THAT(next.message, test::contains("job is broken by a step that failed on this rank"));
    }
  } else {
    CHECK(thrown.message.empty());
  }
  // The other jobs of these processes are intact.
  CHECK(job().sum(1.0) == test::Approx(static_cast<double>(ranks)));
}

TEST_CASE("half and bfloat16 gradients are averaged with exact item counts", "[distributed]") {
  const std::size_t ranks = job().world_size();
  const bool main = job().is_main();
  // 257 items in all: a count bfloat16 cannot hold (256 and 258 it can). Rank 0's gradients are
  // 1, the others' 0: the average is rank 0's share of the items, 256/257 (2 ranks) or 255/257
  // (3), whose nearest bfloat16 (0.99609375, 0.9921875) is not 1 as 256/256 would give.
  {
    torch::manual_seed(2);
    torch::nn::Linear model(1, 1);
    model->to(torch::kBFloat16);
    job().broadcast_parameters(model);  // LibTorch 1.13's Gloo cannot send bfloat16 itself
    const std::size_t mine = main ? 257 - (ranks - 1) : 1;
    for (auto& p : model->parameters()) p.mutable_grad() = torch::full_like(p, main ? 1.0 : 0.0);
    job().average_gradients(model, mine);
    const float expected = torch::tensor(static_cast<double>(258 - ranks) / 257.0, torch::kDouble)
                               .to(torch::kBFloat16)
                               .item<float>();
    for (const auto& p : model->parameters()) {
      CHECK(p.grad().scalar_type() == torch::kBFloat16);
      CHECK(p.grad().item<float>() == expected);
    }
  }
  // float16 holds at most 65504: 40000 items per rank add up past it, and a gradient of 2
  // scaled by 40000 items would too. Rank r's gradients are r + 1: the average is (ranks + 1) / 2.
  {
    torch::nn::Linear model(1, 1);
    model->to(torch::kHalf);
    for (auto& p : model->parameters())
      p.mutable_grad() = torch::full_like(p, static_cast<double>(job().rank() + 1));
    job().average_gradients(model, 40000);
    for (const auto& p : model->parameters()) {
      CHECK(p.grad().scalar_type() == torch::kHalf);
      CHECK(p.grad().item<float>() == test::Approx((static_cast<double>(ranks) + 1) / 2).epsilon(1e-3));
    }
  }
}

TEST_CASE("metrics are summed over the ranks and rank 0 writes the checkpoint", "[distributed]") {
  const bp::Accuracy mine{static_cast<std::int64_t>(job().rank()), 10};
  const bp::Accuracy all = job().sum(mine);
  const auto ranks = static_cast<std::int64_t>(job().world_size());
  CHECK(all.total == 10 * ranks);
  CHECK(all.correct == ranks * (ranks - 1) / 2);
  CHECK(job().mean(static_cast<double>(job().rank())) == test::Approx(static_cast<double>(ranks - 1) / 2.0));
  const auto variables = bp::Variables().with("loss", static_cast<double>(job().rank())).with("step", 3);
  const auto means = job().mean(variables, {"loss", "step"});
  CHECK(means == std::vector<double>{static_cast<double>(ranks - 1) / 2.0, 3.0});
  CHECK_THROWS_WITH(job().mean(variables, {"lost"}),
                    test::contains("pipeline variable 'lost' is not a number"));

  const auto file = std::filesystem::temp_directory_path() /
                    ("batchpipe_distributed_" + std::string(std::getenv("MASTER_PORT")) + ".pt");
  torch::manual_seed(1);
  auto model = small_model();
  std::size_t writers = 0;
  job().on_main([&] {
    ++writers;
    torch::save(model, file.string());
  });
  CHECK(job().sum(static_cast<double>(writers)) == 1.0);
  // Written once, readable by a single process (every rank here, after on_main's barrier).
  auto loaded = small_model();
  torch::load(loaded, file.string());
  CHECK(torch::equal(flat_parameters(loaded), flat_parameters(model)));
  job().barrier();
  if (job().is_main()) std::filesystem::remove(file);

  // Rank 0's failure reaches every rank.
  CHECK_THROWS_WITH(job().on_main([] { throw bp::Error("disk full"); }),
                    job().is_main() ? test::contains("disk full") : test::contains("rank 0 failed"));
}

TEST_CASE("a rendezvous nobody joins fails with the rank, the address and the time waited", "[distributed]") {
  bp::DistributedOptions alone;
  alone.rank = 1;
  alone.world_size = 2;
  alone.master_port = static_cast<std::uint16_t>(std::atoi(std::getenv("MASTER_PORT")) + 50 + job().rank());
  alone.timeout = std::chrono::milliseconds(1500);
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(bp::Distributed(alone),
                    test::contains("rank 1 of 2 could not join the job at 127.0.0.1:" +
                                   std::to_string(alone.master_port)) &&
                        test::contains("1.5 s"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
  CHECK_THROWS_WITH(bp::Distributed(bp::DistributedOptions{.rank = 2, .world_size = 2}),
                    test::contains("rank 2 is not below the world size 2"));
}

// Run apart (its own CTest entry): the last rank first stalls in a second job with a short
// timeout, then leaves for good; the others' collectives must fail with an Error in a bounded
// time each way, never wait forever.
TEST_CASE("a rank that stalls or dies makes the others fail within a bounded time", "[dies]") {
  const bool last = job().rank() + 1 == job().world_size();
  bp::DistributedOptions quick = job().options();
  quick.master_port = static_cast<std::uint16_t>(quick.master_port + 10);
  quick.timeout = std::chrono::seconds(5);
  const bp::Distributed short_job(quick);
  if (last) {
    std::this_thread::sleep_for(std::chrono::seconds(10));  // stalls past the others' timeout
    std::_Exit(0);                                          // then is gone, as a crashed process is
  }
  auto model = small_model();
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  const auto step = [&](const bp::Distributed& on) {
    bp::train_step(on, model, optimizer, torch::randn({4, 6}), torch::zeros({4}, torch::kLong));
  };
  const std::string failed = "allreduce of the gradients failed on rank " + std::to_string(job().rank());
  auto start = std::chrono::steady_clock::now();
  test::finishes_within(std::chrono::seconds(60), [&] {
    CHECK_THROWS_WITH(step(short_job), test::contains(failed) && test::contains("did not answer within 5 s"));
  });
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5 + 10));
  start = std::chrono::steady_clock::now();
  test::finishes_within(std::chrono::seconds(60),
                        [&] { CHECK_THROWS_WITH(step(job()), test::contains(failed)); });
  // Bounded by the stalled rank's exit, not by the job's (longer) timeout.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10 + 10));
  // After a failed collective the ranks no longer agree: every later one fails at once.
  CHECK_THROWS_WITH(job().barrier(), test::contains("broken by an earlier failed collective"));
}

// Not a test (hidden: run it by its tag): how the cost of one step's gradient averaging grows
// with the model, for the closing notes and docs/distributed.md.
//   scripts/launch-local.sh -n 2 -- build/tests/batchpipe_distributed_tests "[.allreduce-cost]"
TEST_CASE("the cost of averaging gradients by model size", "[.allreduce-cost]") {
  for (const std::int64_t parameters : {10'000, 100'000, 1'000'000, 10'000'000}) {
    torch::nn::Linear model(parameters / 100, 100);
    for (auto& p : model->parameters()) p.mutable_grad() = torch::ones_like(p);
    std::vector<double> seconds;
    for (int repeat = 0; repeat < 12; ++repeat) {
      job().barrier();
      const auto start = std::chrono::steady_clock::now();
      job().average_gradients(model, 32);
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = job().max(seconds[seconds.size() / 2]);
    job().on_main([&] {
      std::printf("%zu ranks, %9lld parameters (%6.1f MB): %8.3f ms per step\n", job().world_size(),
                  static_cast<long long>(parameters), static_cast<double>(parameters) * 4e-6, median * 1e3);
    });
  }
  // A whole step of a deeper model, the gradients averaged after the backward pass or during it.
  torch::nn::Sequential deep;
  for (int layer = 0; layer < 8; ++layer) deep->push_back(torch::nn::Linear(1024, 1024));
  job().broadcast_parameters(deep);
  torch::optim::SGD optimizer(deep->parameters(), 0.01);
  const auto inputs = torch::randn({64, 1024});
  const auto targets = torch::randint(0, 1024, {64}, torch::kLong);
  for (const bool overlapped : {false, true, false, true}) {
    std::vector<double> seconds;
    for (int repeat = 0; repeat < 8; ++repeat) {
      job().barrier();
      const auto start = std::chrono::steady_clock::now();
      if (overlapped) {
        bp::train_step(job(), deep, optimizer, inputs, targets);
      } else {
        optimizer.zero_grad();
        torch::nn::functional::cross_entropy(deep->forward(inputs), targets).backward();
        job().average_gradients(deep, 64);
        optimizer.step();
      }
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = job().max(seconds[seconds.size() / 2]);
    job().on_main([&] {
      std::printf("%zu ranks, 8 x 1024 x 1024 (33.6 MB), batch 64: %8.2f ms per step, averaged %s\n",
                  job().world_size(), median * 1e3, overlapped ? "during the backward pass" : "after it");
    });
  }
}

// Not a test (hidden: run it by its tag): which types LibTorch's Gloo sums, and what a count of
// 257 becomes in bfloat16: why bfloat16 gradients travel as float and the counts as int64.
//   scripts/launch-local.sh -n 2 -- build/tests/batchpipe_distributed_tests "[.gloo-types]"
TEST_CASE("the types Gloo sums", "[.gloo-types]") {
  for (const auto type : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    std::vector<at::Tensor> tensors{torch::full({1}, 128.5, torch::TensorOptions().dtype(type))};
    const Thrown thrown = thrown_by([&] { job().process_group()->allreduce(tensors)->wait(); });
    job().on_main([&] {
      std::printf("%s: %s\n", c10::toString(type),
                  thrown.message.empty() ? ("sum " + std::to_string(tensors[0].item<double>())).c_str()
                                         : thrown.message.substr(0, thrown.message.find('\n')).c_str());
    });
  }
  job().on_main([] {
    std::printf("257 as bfloat16: %g; 1 * 257 in bfloat16: %g\n",
                torch::tensor(257.0).to(torch::kBFloat16).item<double>(),
                torch::ones({1}, torch::kBFloat16).mul_(257.0).item<double>());
  });
}
