// A model definition cannot be called by users.
#include <batchpipe/batchpipe.hpp>

struct B : bp::Batch<B> {
  MODEL(net)() { return 1; }
  ACTION(use)() { (void)bp_define_net(); }
};

int main() { B{}.use(); }
