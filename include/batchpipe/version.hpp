#pragma once
/// @file version.hpp
/// @brief The library's version, as numbers and as a string.

/// @brief The major version: changes that break users' code.
#define BATCHPIPE_VERSION_MAJOR 0
/// @brief The minor version: new features (while the major version is 0, also breaking changes).
#define BATCHPIPE_VERSION_MINOR 2
/// @brief The patch version: fixes.
#define BATCHPIPE_VERSION_PATCH 0

// The string is made from the numbers above, so that the two cannot drift apart.
/// @cond INTERNAL
#define BATCHPIPE_VERSION_TEXT_(x) #x
#define BATCHPIPE_VERSION_TEXT(x) BATCHPIPE_VERSION_TEXT_(x)
/// @endcond

namespace batchpipe {
/// @brief The version of the headers in use, "major.minor.patch".
inline constexpr const char* version =
    BATCHPIPE_VERSION_TEXT(BATCHPIPE_VERSION_MAJOR) "." BATCHPIPE_VERSION_TEXT(
        BATCHPIPE_VERSION_MINOR) "." BATCHPIPE_VERSION_TEXT(BATCHPIPE_VERSION_PATCH);
}  // namespace batchpipe

#undef BATCHPIPE_VERSION_TEXT
#undef BATCHPIPE_VERSION_TEXT_
