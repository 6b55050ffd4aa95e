// GoogleMock defines a macro ACTION; with BATCHPIPE_NO_SHORT_MACROS batchpipe keeps to its long
// names, and both work in one translation unit, whichever header comes first.
#define BATCHPIPE_NO_SHORT_MACROS
#include <batchpipe/batchpipe.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

struct CountingBatch : bp::Batch<CountingBatch> {
  BATCHPIPE_MODEL(counter)() { return 0; }
  BATCHPIPE_ACTION(count, .model = "counter", .singleton = true)(int& counter) {
    counter += static_cast<int>(size());
  }
};

// GoogleMock's ACTION: a mock action that returns its argument doubled.
ACTION(ReturnDouble) { return 2 * arg0; }

struct Doubler {
  virtual ~Doubler() = default;
  virtual int twice(int) = 0;
};
struct MockDoubler : Doubler {
  MOCK_METHOD(int, twice, (int), (override));
};

TEST(GmockBesideBatchpipe, BothMacrosWork) {
  MockDoubler mock;
  EXPECT_CALL(mock, twice(21)).WillOnce(ReturnDouble());
  EXPECT_EQ(mock.twice(21), 42);

  bp::Dataset<CountingBatch>(10).pipeline().count().run({.batch_size = 3});
  EXPECT_EQ(*CountingBatch::models().get<int>("counter"), 10);
}

}  // namespace
