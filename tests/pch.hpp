// The precompiled header of the tests and the docs examples.
#pragma once
#include "catch_compat.hpp"

#include <batchpipe/batchpipe.hpp>

#include <torch/torch.h>
