// A second translation unit that includes every header and uses the main templates: a function
// defined in a header without `inline` would be defined twice and fail to link.
#include <batchpipe/batchpipe.hpp>

namespace {
struct OdrBatch : bp::Batch<OdrBatch> {
  MODEL(model)() { return 1; }
  ACTION(touch, .model = "model")(int& model) { ++model; }
};
}  // namespace

int odr_second_unit_runs() {
  bp::Dataset<OdrBatch> dataset(bp::Index::from_paths({"a", "b"}));
  return static_cast<int>(dataset.pipeline().touch().run({.batch_size = 1}).batches);
}
