#pragma once
/// @file version.hpp
/// @brief The library's version, as numbers and as a string.

#define BATCHPIPE_VERSION_MAJOR 0
#define BATCHPIPE_VERSION_MINOR 1
#define BATCHPIPE_VERSION_PATCH 0

namespace batchpipe {
/// @brief The version of the headers in use, "major.minor.patch".
inline constexpr const char* version = "0.1.0";
}  // namespace batchpipe
