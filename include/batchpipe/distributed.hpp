#pragma once
/// @file distributed.hpp
/// @brief Data-parallel training over LibTorch's c10d with Gloo (see distributed/distributed.hpp).
/// Kept out of the umbrella header: it needs the c10d and Gloo headers, which single-process
/// programs do without.

#include <batchpipe/distributed/distributed.hpp>
