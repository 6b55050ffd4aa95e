#pragma once
/// @file batchpipe.hpp
/// @brief The whole of batchpipe: include this one header.
///
/// One header per concept:
/// - index.hpp      Index: ids, source rows, files; split and subsets
/// - dataset.hpp    Dataset<B>: an index, a batch class, preloaded data; creates batches
/// - batch.hpp      Batch<Derived>: the CRTP base of batch classes; components
/// - action.hpp     ACTION(...) and the action registry
/// - model.hpp      MODEL(...) and the model directory
/// - pipeline.hpp   Pipeline<B> (lazy, fluent) and BatchStream<B> (one run, with prefetch)
/// - iteration.hpp  RunOptions
/// - random.hpp     Random: each batch's random stream
/// - error.hpp      Error, ActionError
/// - variables.hpp  pipeline variables
/// - parallel.hpp   for_each_item: parallel work on a batch's items
/// - io.hpp         IDX, .npy, CSV and image files (io/*.hpp)
/// - images.hpp     ImagesBatch: a ready batch type with load, normalize, flip, crop, ...
/// - training.hpp   TorchModel, train_step, predict, evaluate
/// - checkpoint.hpp save_checkpoint, load_checkpoint

#include "action.hpp"
#include "batch.hpp"
#include "checkpoint.hpp"
#include "dataset.hpp"
#include "error.hpp"
#include "fwd.hpp"
#include "images.hpp"
#include "index.hpp"
#include "io.hpp"
#include "iteration.hpp"
#include "model.hpp"
#include "parallel.hpp"
#include "pipeline.hpp"
#include "random.hpp"
#include "training.hpp"
#include "variables.hpp"
#include "version.hpp"

/// The short name used throughout the docs: `bp::Batch`, `bp::Dataset`, ...
/// Define BATCHPIPE_NO_SHORT_NAMESPACE when `bp` is taken in your code.
#ifndef BATCHPIPE_NO_SHORT_NAMESPACE
namespace bp = batchpipe;
#endif
