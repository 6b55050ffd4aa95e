// docs/distributed.md: data-parallel training, one program for one process or many.
//
//   build/tests/doc_distributed                                    # one process
//   scripts/launch-local.sh -n 2 -- build/tests/doc_distributed    # two, on loopback
#include <batchpipe/batchpipe.hpp>
#include <batchpipe/distributed.hpp>

#include <torch/torch.h>

#include <cstdio>

using Model = bp::TorchModel<torch::nn::Linear, torch::optim::SGD>;

struct Points : bp::Batch<Points> {
  MODEL(line)() {
    torch::nn::Linear net(2, 2);
    return Model{net, torch::optim::SGD(net->parameters(), 0.5)};
  }
  // The job is an argument: a default bp::Distributed is a world of one.
  ACTION(train, .model = "line", .singleton = true)(Model& model, bp::Distributed job) {
    bp::train_step(job, model.module, model.optimizer, get("x"), get("y"));
  }
  ACTION(evaluate, .model = "line")(Model& model) {
    bp::evaluate(model.module, get("x"), get("y"), variable<bp::Accuracy>("accuracy"));
  }
};

int main() {
  const bp::Distributed job = bp::Distributed::from_environment();  // RANK unset: a world of one

  // Two classes of points either side of x0 + x1 = 0 (the same data on every rank).
  torch::manual_seed(0);
  const auto x = torch::randn({4000, 2});
  const auto y = (x.sum(1) > 0).to(torch::kLong);
  bp::Dataset<Points> data(4000, {{"x", x}, {"y", y}});

  auto training = data.pipeline().train(job);
  // Every rank starts from rank 0's weights.
  job.broadcast_parameters(training.model<Model>("line")->module);
  // Same shuffle everywhere, a disjoint shard each: together one pass over the data per epoch.
  training.run({.batch_size = 50,
                .n_epochs = 3,
                .shuffle = 1,
                .threads = job.threads_per_process(),
                .shard = job.shard()});

  auto evaluation = data.pipeline()
                        .with_model(training.model_instance("line"))
                        .init_variable("accuracy", bp::Accuracy{})
                        .evaluate();
  evaluation.run({.batch_size = 500, .shard = job.shard()});
  const bp::Accuracy accuracy = job.sum(evaluation.variables().value<bp::Accuracy>("accuracy"));

  job.on_main([&] {
    std::printf("%zu process(es): accuracy %.3f on %lld points\n", job.world_size(), accuracy.value(),
                static_cast<long long>(accuracy.total));
  });
  return accuracy.total == 4000 && accuracy.value() > 0.95 ? 0 : 1;
}
