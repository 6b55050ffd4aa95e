// An action naming a model the class does not define.
#include <batchpipe/batchpipe.hpp>

struct B : bp::Batch<B> {
  MODEL(net)() { return 1; }
  ACTION(train, .model = "nte")(int& model) { ++model; }
};

int main() { bp::Dataset<B>(4).pipeline().train().run({}); }
