// An action named like a member of Batch (`size`) would hide it.
#include <batchpipe/batchpipe.hpp>

struct B : bp::Batch<B> {
  ACTION(size)() {}
};

int main() { bp::Dataset<B>(4).pipeline().run({}); }
