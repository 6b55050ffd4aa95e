// A fluent call with an argument the action cannot take.
#include <batchpipe/batchpipe.hpp>

struct B : bp::Batch<B> {
  ACTION(scale)(float factor) { (void)factor; }
};

int main() { bp::Dataset<B>(4).pipeline().scale(std::string("two")).run({}); }
