#pragma once
/// @file batchpipe.hpp
/// @brief The whole of batchpipe: include this one header.
///
/// One header per concept, in folders that follow the architecture:
/// - core/        the pipeline machinery, nothing specific to a kind of data
///   - index.hpp          Index: ids, source rows, files; split and subsets
///   - dataset.hpp        `Dataset<B>`: an index, a batch class, preloaded data; creates batches
///   - batch.hpp          `Batch<Derived>`: the CRTP base of batch classes; components
///   - action.hpp         BATCHPIPE_ACTION (ACTION) and the action registry
///   - action_options.hpp ActionOptions, ActionInfo
///   - model.hpp          BATCHPIPE_MODEL (MODEL) and the model directory, the class's models
///   - model_instance.hpp ModelInstance: one model built from a config; where models are built
///   - pipeline.hpp       `Pipeline<B>`: lazy and fluent; where actions are dispatched
///   - expressions.hpp    named expressions B, V, C, F, R: arguments evaluated for each batch
///   - config.hpp         Config: settings by dotted paths, JSON in and out
///   - batch_stream.hpp   `BatchStream<B>`: one run's batches, with prefetch
///   - run_options.hpp    RunOptions, RunStats
///   - random.hpp         Random: each batch's random stream
///   - variables.hpp      pipeline variables
///   - parallel.hpp       for_each_item: parallel work on a batch's items
///   - error.hpp          Error, ActionError, FileError
/// - io/          readers and writers of IDX, .npy, CSV and image files (io.hpp includes them all)
/// - images/      ImagesBatch: a ready batch type with load, resize, crops, normalize, flip, ...;
///                ImageFolder; ImageList (images of many sizes in one batch)
/// - training/    TorchModel, train_step, predict, evaluate; checkpoints
/// - detail/      the library's internals: not for users
///
/// Define BATCHPIPE_NO_SHORT_MACROS to keep the short macro names `ACTION` and `MODEL` free
/// (GoogleMock has an `ACTION`), and BATCHPIPE_NO_SHORT_NAMESPACE to keep `bp` free.

#include <batchpipe/core/action.hpp>
#include <batchpipe/core/batch.hpp>
#include <batchpipe/core/batch_stream.hpp>
#include <batchpipe/core/config.hpp>
#include <batchpipe/core/dataset.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/expressions.hpp>
#include <batchpipe/core/index.hpp>
#include <batchpipe/core/memory.hpp>
#include <batchpipe/core/model.hpp>
#include <batchpipe/core/model_instance.hpp>
#include <batchpipe/core/parallel.hpp>
#include <batchpipe/core/pipeline.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/core/run_options.hpp>
#include <batchpipe/core/variables.hpp>
#include <batchpipe/fwd.hpp>
#include <batchpipe/images/image_folder.hpp>
#include <batchpipe/images/image_list.hpp>
#include <batchpipe/images/images_batch.hpp>
#include <batchpipe/io.hpp>
#include <batchpipe/training/checkpoint.hpp>
#include <batchpipe/training/training.hpp>
#include <batchpipe/version.hpp>

/// @namespace batchpipe
/// @brief Everything batchpipe offers; `bp` is its short name.

/// @namespace bp
/// @brief The short name of namespace batchpipe, used throughout the docs: `bp::Batch`,
/// `bp::Dataset`, ... Define BATCHPIPE_NO_SHORT_NAMESPACE when `bp` is taken in your code.
#ifndef BATCHPIPE_NO_SHORT_NAMESPACE
namespace bp = batchpipe;
#endif
