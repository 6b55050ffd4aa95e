// The precompiled header of the tests and the docs examples.
#pragma once
#include <batchpipe/batchpipe.hpp>
#include <catch2/catch.hpp>
#include <torch/torch.h>
