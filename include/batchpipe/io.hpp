#pragma once
/// @file io.hpp
/// @brief Readers and writers of data files: IDX, NumPy .npy, CSV, and (with stb) images.

#include <batchpipe/core/error.hpp>
#include <batchpipe/io/csv.hpp>
#include <batchpipe/io/idx.hpp>
#include <batchpipe/io/npy.hpp>
#if __has_include(<stb/stb_image.h>)
#include <batchpipe/io/image.hpp>
#endif

/// @namespace batchpipe::io
/// @brief Readers and writers of data files: IDX, NumPy .npy, CSV, and (with stb) images.
