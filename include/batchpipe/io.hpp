#pragma once
/// @file io.hpp
/// @brief Readers and writers of data files: IDX, NumPy .npy, CSV, and (with stb) images.

#include "io/csv.hpp"
#include "io/file_error.hpp"
#include "io/idx.hpp"
#include "io/npy.hpp"
#if __has_include(<stb/stb_image.h>)
#include "io/image.hpp"
#endif
