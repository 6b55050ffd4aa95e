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
endmacro()

# Torch's targets (not TORCH_LIBRARIES, which also holds the absolute path of libc10).
set(BATCHPIPE_TORCH_TARGETS torch torch_library)
