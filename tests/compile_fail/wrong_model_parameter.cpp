// A model-based action whose first parameter does not take the model's descriptor.
#include <batchpipe/batchpipe.hpp>

struct B : bp::Batch<B> {
  MODEL(net)() { return std::string("model"); }
  ACTION(train, .model = "net")(int& model) { ++model; }
};

int main() { bp::Dataset<B>(4).pipeline().train().run({}); }
