#pragma once
/// @file io.hpp
/// @brief Readers and writers of data files: IDX, NumPy .npy, CSV, and (with stb) images.

#include <batchpipe/core/error.hpp>
/// @def BATCHPIPE_HAS_STB
/// @brief 1 when image files are supported: stb's headers are found and BATCHPIPE_NO_STB is not
/// defined (batchpipe's CMake target defines it when stb's library is missing, so that a
/// header-only copy of stb does not end in undefined symbols at link time).
#if !defined(BATCHPIPE_NO_STB) && __has_include(<stb/stb_image.h>)
#define BATCHPIPE_HAS_STB 1
#else
#define BATCHPIPE_HAS_STB 0
#endif

#include <batchpipe/io/csv.hpp>
#include <batchpipe/io/idx.hpp>
#include <batchpipe/io/npy.hpp>
#if BATCHPIPE_HAS_STB
#include <batchpipe/io/image.hpp>
#endif

/// @namespace batchpipe::io
/// @brief Readers and writers of data files: IDX, NumPy .npy, CSV, and (with stb) images.
