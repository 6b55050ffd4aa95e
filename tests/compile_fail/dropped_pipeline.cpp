// Chaining returns a new pipeline; dropping it loses the action (the old pipeline is unchanged).
#include <batchpipe/batchpipe.hpp>

struct B : bp::Batch<B> {
  ACTION(touch)() {}
};

int main() {
  auto pipeline = bp::Dataset<B>(4).pipeline();
  pipeline.touch();
  pipeline.run({});
}
