# What batchpipe's headers need, found the same way for batchpipe's own build and for a project
# that uses the installed package (batchpipeConfig.cmake includes this file). Every dependency is
# reached through imported targets, so nothing here records a path of the machine that built it.
#
# `batchpipe_find` is find_package in batchpipe's build and find_dependency in the package.
set(_batchpipe_module_dir "${CMAKE_CURRENT_LIST_DIR}")  # where Findstb.cmake is
macro(batchpipe_find_dependencies batchpipe_find)
  list(PREPEND CMAKE_MODULE_PATH "${_batchpipe_module_dir}")
  cmake_language(CALL ${batchpipe_find} Torch)
  cmake_language(CALL ${batchpipe_find} TBB)
  cmake_language(CALL ${batchpipe_find} ZLIB)
  cmake_language(CALL ${batchpipe_find} nlohmann_json 3.10)  # Config's JSON
  # stb decodes images (io/image.hpp); without it batchpipe works, minus image files.
  find_package(stb QUIET)
  list(POP_FRONT CMAKE_MODULE_PATH)
  # The fast decoders of JPEG and PNG; without them stb decodes those too.
  _batchpipe_find_c_library(batchpipe::turbojpeg turbojpeg.h turbojpeg)
  _batchpipe_find_c_library(batchpipe::spng spng.h spng)
endmacro()

# A C library as Debian ships it, a header and a shared library, as the imported target
# `target`; none when either is missing.
function(_batchpipe_find_c_library target header library)
  string(MAKE_C_IDENTIFIER "batchpipe_${library}" var)
  find_path(${var}_INCLUDE_DIR ${header})
  find_library(${var}_LIBRARY ${library})
  mark_as_advanced(${var}_INCLUDE_DIR ${var}_LIBRARY)
  if(${var}_INCLUDE_DIR AND ${var}_LIBRARY AND NOT TARGET ${target})
    add_library(${target} UNKNOWN IMPORTED)
    set_target_properties(${target} PROPERTIES
      IMPORTED_LOCATION "${${var}_LIBRARY}" INTERFACE_INCLUDE_DIRECTORIES "${${var}_INCLUDE_DIR}")
  endif()
endfunction()

# Torch's targets (not TORCH_LIBRARIES, which also holds the absolute path of libc10).
set(BATCHPIPE_TORCH_TARGETS torch torch_library)
