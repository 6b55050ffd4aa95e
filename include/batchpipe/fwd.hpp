#pragma once
/// @file fwd.hpp
/// @brief Forward declarations of batchpipe's public types, for headers that only name them.

#include <cstddef>

namespace batchpipe {
class Index;
class Random;
class Config;
class ModelInstance;
struct RunOptions;
struct RunStats;
struct RunReport;
struct ActionOptions;
struct ActionInfo;
class ActionError;
template <class Derived>
class Batch;
template <class B>
class Dataset;
template <class B>
class Pipeline;
template <class B>
class BatchStream;
template <class B>
class ModelDirectory;
template <class B>
class ActionRegistry;

namespace detail {
struct access;
}  // namespace detail
}  // namespace batchpipe
